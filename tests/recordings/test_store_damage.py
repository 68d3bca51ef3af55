"""A damaged store never loses an intact episode: the damage matrix (`tests.support.store_damage`).

Each case builds a small store (four synthetic episodes, 4-frame chunks),
damages it one way, and then checks, by content hash, what issue 18 asks:
`store verify` names the damaged episodes (exit 3), the next append succeeds,
and every intact episode comes back byte for byte from the store after the
append, from a LeRobotDataset export and from behaviour cloning's loader; the
damaged ones are kept (quarantined), never cut off with what follows them.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from app.cli import main
from policies.actor_critic.bc_train import BCTrainConfig, load_frames, train_bc
from policies.actor_critic.model import ActorCriticConfig
from recordings import layout
from recordings.episode import Episode
from recordings.errors import DamagedEpisodeError
from recordings.quarantine import CHUNK_DIR
from recordings.selection import EpisodeFilter
from recordings.store import EpisodeStore
from tests.support.store_damage import (
    CASES,
    FPS,
    LENGTHS,
    TRAINED,
    Case,
    append_streamed,
    build,
    chunk_file,
    content_hash,
    episode,
    exported_hashes,
    flip_state_bit,
    garble_json,
    json_path,
    set_end,
    truncate,
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_damage_keeps_every_intact_episode(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    before = build(path)
    case.damage(path)

    # verify names exactly the damaged episodes, and says so with its exit code
    with EpisodeStore.open(path) as store:
        assert store.num_episodes == len(LENGTHS)  # nothing looks shorter
        report = store.verify()
    assert set(report.damaged) == case.found, [str(d) for d in report.damaged.values()]
    assert bool(report.index_problems) == case.index_damage, report.index_problems
    capsys.readouterr()
    assert main(["store", "verify", str(path)]) == (3 if case.found or case.index_damage else 0)
    out = capsys.readouterr().out
    for i in case.found:
        assert f"DAMAGED episode {i}:" in out

    # the next append succeeds and gets the next index: nothing committed was cut off
    new = episode(len(LENGTHS))
    assert append_streamed(path, new) == len(LENGTHS)
    intact = set(range(len(LENGTHS))) - case.lost
    expected = {i: content_hash(before[i]) for i in intact}
    expected[len(LENGTHS)] = content_hash(new)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recordings"), EpisodeStore.open(path) as store:
        assert store.num_episodes == len(LENGTHS) + 1
        assert sorted(store.damaged) == sorted(case.lost)
        assert not store.index_problems  # the writer restored the commit record from the episode JSONs
        # readers skip damaged episodes with one line naming them, and refuse them by index
        assert [r.index for r in store.episodes()] == sorted(expected)
        assert [r.index for r in store.episodes()] == sorted(expected)  # listed twice, said once
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if case.lost:
            assert len(warnings) == 1 and f"damaged episodes {', '.join(map(str, sorted(case.lost)))}" in warnings[0]
            for i in case.lost:
                with pytest.raises(DamagedEpisodeError, match=f"episode {i} is damaged") as refused:
                    store.load_episode(i)
                assert "\n" not in str(refused.value)
        else:
            assert warnings == []
        got = {i: content_hash(store.load_episode(i)) for i in expected}
        assert got == expected
        report = store.verify()
        assert set(report.damaged) == case.lost and set(report.intact) == set(expected)

        # behaviour cloning's selection and loader see exactly the intact episodes, byte for byte
        selected = [r.index for r in store.episodes(EpisodeFilter(aborted=None))]
        assert selected == sorted(expected)
        frames = load_frames(store, selected, cameras=["left", "right"])
        for i in selected:
            rows = frames.episode == i
            loaded = Episode(
                meta=store.record(i).meta,
                images={c: frames.images[c][rows] for c in ("left", "right")},
                state=frames.state[rows],
                action=frames.action[rows],
                timestamp=np.zeros(0),
            )
            want = before[i] if i < len(LENGTHS) else new
            assert content_hash(loaded, fields=TRAINED) == content_hash(want, fields=TRAINED)

    # export: the intact episodes reach the LeRobotDataset unchanged, the damaged ones not at all
    out_dir = tmp_path / "dataset"
    assert main(["store", "export", str(path), "--output-dir", str(out_dir), "--fps", str(FPS)]) == 0
    exported = exported_hashes(out_dir)
    assert exported == {i: content_hash(before[i] if i < len(LENGTHS) else new, fields=TRAINED) for i in expected}


def test_damage_found_only_while_reading_is_quarantined_and_skipped(tmp_path: Path) -> None:
    """No verify first: a bit flip is caught by the checksum when an episode is read, and every
    reader after that (training, export, a writer's record) leaves the episode out."""
    path = tmp_path / "store"
    build(path)
    flip_state_bit(path)
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == []  # nothing structural: only the bytes can tell
        frames = load_frames(store, [0, 1, 2, 3])
        assert sorted(set(frames.episode.tolist())) == [0, 2, 3]
        assert sorted(store.damaged) == [1]
        assert [r.index for r in store.episodes()] == [0, 2, 3]
        with pytest.raises(DamagedEpisodeError, match="episode 1 is damaged .*data/state"):
            list(store.iter_frames(1))
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        with pytest.raises(DamagedEpisodeError):
            store.load_episode(1)  # found by a writer: recorded in the quarantine record
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [1]


def test_iter_frames_refuses_a_mismatch_after_the_last_frame(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    flip_state_bit(path)
    with EpisodeStore.open(path) as store:
        frames = store.iter_frames(1)
        seen = 0
        with pytest.raises(DamagedEpisodeError, match="differ from the checksum written at commit"):
            for _ in frames:
                seen += 1
        assert seen == LENGTHS[1]


def test_an_episode_repaired_by_hand_is_released(tmp_path: Path) -> None:
    """Metadata mended by hand counts at once (it is checked at every open); mended bytes once
    verify has read them again (the quarantine record remembers data damage until then)."""
    path = tmp_path / "store"
    build(path)
    original = json_path(path, 1).read_bytes()
    garble_json(path)
    append_streamed(path, episode(4))  # the writer lists episode 1 in the quarantine record
    assert json.loads((path / "meta" / "quarantine.json").read_text())["episodes"].keys() == {"1"}
    json_path(path, 1).write_bytes(original)  # restored from a backup
    with EpisodeStore.open(path) as store:
        assert store.damaged == {} and len(store.episodes()) == 5

    state_chunk = chunk_file(path, layout.STATE, 3).read_bytes()
    flip_state_bit(path)
    assert main(["store", "verify", str(path)]) == 3
    chunk_file(path, layout.STATE, 3).write_bytes(state_chunk)  # restored from a backup
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [1]  # until it is read again
        report = store.verify()
        assert report.ok and report.intact == [0, 1, 2, 3, 4] and "no episodes" in report.recorded
        assert store.damaged == {} and [r.index for r in store.episodes()] == [0, 1, 2, 3, 4]
    with EpisodeStore.open(path) as store:
        assert store.damaged == {}


def test_undecodable_tail_chunk_is_set_aside_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    truncated = chunk_file(path, layout.ACTION, 9)
    truncate(layout.ACTION, 9)(path)
    damaged_bytes = truncated.read_bytes()
    append_streamed(path, episode(4))  # rewrites that chunk: its old bytes are kept aside
    kept = list((path / CHUNK_DIR).iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == damaged_bytes
    with EpisodeStore.open(path) as store:
        assert sorted(store.damaged) == [3]
        assert "set aside" in store.damaged[3].why


def test_old_store_without_checksums_reads_as_unverified(tmp_path: Path) -> None:
    path = tmp_path / "store"
    before = build(path)
    for i in range(len(LENGTHS)):
        info = json.loads(json_path(path, i).read_text())
        del info["checksums"]  # what a store written before checksums looks like
        json_path(path, i).write_text(json.dumps(info))
    with EpisodeStore.open(path) as store:
        report = store.verify()
        assert report.ok and report.unverified == [0, 1, 2, 3] and report.intact == []
        assert content_hash(store.load_episode(2)) == content_hash(before[2])
    assert main(["store", "verify", str(path)]) == 0


def test_store_info_reports_damage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "store"
    build(path)
    garble_json(path)
    set_end(path, 2, 5)
    assert main(["store", "info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["committed"] == 4 and summary["episodes"] == 3
    assert [d["index"] for d in summary["damaged"]] == [1]
    assert summary["index_problems"] == ["meta/episode_ends[2] is 5, the episode JSONs say 30"]


def test_reward_traces_written_later_keep_their_episode_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "store"
    build(path)
    with EpisodeStore.open(path, mode="a", durable=False) as store:
        store.write_rewards(1, "progress", np.linspace(0, 1, LENGTHS[1]))  # a new modality
        store.write_rewards(0, "progress", np.zeros(LENGTHS[0]))  # replacing one
        assert store.verify().intact == [0, 1, 2, 3]
    rewards = zarr.open_array(LocalStore(path), path=layout.reward_key("progress"), zarr_format=3)
    rewards[10] = 7.0  # a value changed behind the store's back
    with EpisodeStore.open(path) as store:
        report = store.verify()
        assert list(report.damaged) == [1] and report.damaged[1].where == layout.reward_key("progress")


def test_truncated_camera_chunk_is_one_line_in_view_and_skipped_by_export_and_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 18's tracebacks: nothing verified first, the damage is met by each command as it reads."""
    path = tmp_path / "store"
    before = build(path)
    truncate(layout.camera_key("right"), 4)(path)

    assert main(["view", str(path), "--episode", "1", "--save", str(tmp_path / "e1.rrd")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "episode 1 is damaged" in err and "data/camera/right" in err

    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = train_bc(
            BCTrainConfig(
                store=path,
                output_dir=tmp_path / "bc",
                policy=ActorCriticConfig(hidden_dims=[16], cameras=["right"]),
                steps=3,
                batch_size=4,
                val_fraction=0.0,
                progress=False,
            )
        )
    assert result is not None
    skipped = [r.getMessage() for r in caplog.records if "training without episode" in r.getMessage()]
    assert len(skipped) == 1 and "episode 1 is damaged" in skipped[0] and "\n" not in skipped[0]

    assert main(["store", "export", str(path), "--output-dir", str(tmp_path / "ds"), "--fps", str(FPS)]) == 0
    assert sorted(exported_hashes(tmp_path / "ds")) == [0, 2, 3]
    assert exported_hashes(tmp_path / "ds")[2] == content_hash(before[2], fields=TRAINED)
