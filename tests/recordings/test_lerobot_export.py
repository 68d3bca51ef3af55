"""Export to a LeRobotDataset and read it back with LeRobot's own loader, frame by frame.

Offline: HF_HUB_OFFLINE=1 and a local root, so LeRobot never asks the Hub.
Image features come back as float32 CHW in [0, 1] (torchvision's ToTensor of
the stored PNG); `round(x * 255)` recovers the uint8 pixels, which must equal
the stored bytes exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from recordings.episode import Episode, EpisodeMeta
from recordings.lerobot_export import SIDECAR_NAME, ExportError, export_lerobot, load_export_sidecar
from recordings.errors import StoreError
from recordings.store import EpisodeStore

torch = pytest.importorskip("torch")
lerobot_dataset = pytest.importorskip("lerobot.datasets.lerobot_dataset")

FPS = 10
CAMERAS = {"base_camera": (48, 64), "hand_camera": (32, 40)}
LENGTHS = [6, 4, 8, 3]
TASKS = ["pick up the red cube", "push the cube to the goal", "stack the red cube on the green cube", "pick up the red cube"]
# episode 0 succeeded in the simulator, 1 has only an operator's verdict, 2 failed although the LRM
# accepted it, 3 was aborted
VERDICTS = [
    {"lrm_verdict": True, "oracle_success": True},
    {"lrm_verdict": False, "operator_verdict": True},
    {"lrm_verdict": True, "oracle_success": False},
    {"aborted": True, "oracle_success": False},
]
STATE_DIM, ACTION_DIM = 5, 3
REPO_ID = "local/lrm-robot-test"


def _episode(rng: np.random.Generator, i: int) -> Episode:
    length = LENGTHS[i]
    progress = np.full(length, np.nan, dtype=np.float32)
    progress[1::2] = rng.random(len(progress[1::2]), dtype=np.float32)  # frame 0 not queried: held as 0
    dense = rng.random(length, dtype=np.float32)  # the simulator's dense reward, at every frame
    return Episode(
        meta=EpisodeMeta(task=TASKS[i], source="demo", round=i, seed=100 + i, extra={"k": i}, **VERDICTS[i]),
        images={c: rng.integers(0, 256, (length, h, w, 3), dtype=np.uint8) for c, (h, w) in CAMERAS.items()},
        state=rng.standard_normal((length, STATE_DIM)).astype(np.float32),
        action=rng.standard_normal((length, ACTION_DIM)).astype(np.float32),
        timestamp=np.arange(length, dtype=np.float64) / FPS,
        rewards={"progress": progress, "dense_reward": dense} if i != 1 else {},
        # episode 0's hand camera was rendered only at its first and last frames
        real={"hand_camera": np.arange(length) % (length - 1) == 0} if i == 0 else {},
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EpisodeStore, list[Episode]]]:
    rng = np.random.default_rng(7)
    episodes = [_episode(rng, i) for i in range(len(LENGTHS))]
    path = tmp_path_factory.mktemp("store") / "episodes.zarr"
    with EpisodeStore.open(path, mode="a", fps=FPS) as store:
        for episode in episodes:
            store.append(episode)
    with EpisodeStore.open(path, mode="r") as store:
        yield store, episodes


def _held(trace: np.ndarray) -> np.ndarray:
    """The interval-hold the export promises, written as plainly as possible."""
    out, value = [], 0.0
    for x in trace:
        value = value if np.isnan(x) else float(x)
        out.append(value)
    return np.asarray(out, dtype=np.float32)


def _no_nan(obj) -> bool:
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan(v) for v in obj)
    return not (isinstance(obj, float) and np.isnan(obj))


def _load(root: Path, **kwargs):
    return lerobot_dataset.LeRobotDataset(REPO_ID, root=root, **kwargs)


def _pixels(image: torch.Tensor) -> np.ndarray:
    """Loader image (float32 CHW in [0, 1]) -> the uint8 HWC bytes it was made from."""
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_selection_reads_back_frame_exact(stored, tmp_path: Path) -> None:
    store, episodes = stored
    selection = [2, store.episodes()[0]]  # an index and a record, exported in this order
    out = export_lerobot(store, tmp_path / "ds", repo_id=REPO_ID, episodes=selection, rewards=True, robot_type="panda")

    dataset = _load(out)
    assert dataset.num_episodes == 2
    assert len(dataset) == LENGTHS[2] + LENGTHS[0]
    assert dataset.fps == FPS
    assert dataset.features["observation.state"]["names"] == [f"state_{i}" for i in range(STATE_DIM)]
    assert dataset.features["action"]["names"] == [f"action_{i}" for i in range(ACTION_DIM)]
    assert dataset.features["observation.images.base_camera"]["dtype"] == "image"

    sidecar = load_export_sidecar(out)
    assert {k: v[0] for k, v in sidecar.items()} == {0: 2, 1: 0}
    assert sidecar[0][1] == store.episodes()[2].meta
    assert json.loads((out / SIDECAR_NAME).read_text())["source_store"] == str(Path(store.path).resolve())

    expected_index = 0
    for lerobot_episode, store_index in ((0, 2), (1, 0)):
        source = episodes[store_index]
        for t in range(len(source)):
            item = dataset[expected_index]
            assert item["index"].item() == expected_index
            assert item["episode_index"].item() == lerobot_episode
            assert item["frame_index"].item() == t
            assert item["timestamp"].item() == pytest.approx(t / FPS, abs=1e-6)
            assert item["task"] == source.meta.task
            for camera in CAMERAS:
                np.testing.assert_array_equal(_pixels(item[f"observation.images.{camera}"]), source.images[camera][t])
            for camera in CAMERAS:  # the real-image mark, as LeRobot's reader returns it
                assert bool(item[f"is_real.{camera}"].item()) == bool(source.real_mask(camera)[t])
            np.testing.assert_array_equal(item["observation.state"].numpy(), source.state[t])
            np.testing.assert_array_equal(item["action"].numpy(), source.action[t])
            # each trace held between queries, and where it was queried
            assert item["reward.progress"].item() == _held(source.rewards["progress"])[t]
            assert bool(item["reward_queried.progress"].item()) == (not np.isnan(source.rewards["progress"][t]))
            # LeRobot's next.*: the dense reward after this frame's action, done and success at the last frame
            dense = source.rewards["dense_reward"]
            assert item["next.reward"].item() == dense[min(t + 1, len(source) - 1)]
            assert bool(item["next.done"].item()) == (t == len(source) - 1)
            assert bool(item["next.success"].item()) == (t == len(source) - 1 and source.meta.oracle_success)
            expected_index += 1

    # LeRobot's own metadata: robot_type, the verdicts per episode, and statistics without NaN
    assert dataset.meta.robot_type == "panda"
    rows = [dataset.meta.episodes[i] for i in range(2)]
    assert [r["lrm_robot/store_index"] for r in rows] == [2, 0]
    assert [r["lrm_robot/oracle_success"] for r in rows] == ["no", "yes"]
    assert [r["lrm_robot/lrm_verdict"] for r in rows] == ["yes", "yes"]
    assert [r["lrm_robot/operator_verdict"] for r in rows] == ["unknown", "unknown"]
    assert [r["lrm_robot/success"] for r in rows] == [False, True]
    assert json.loads(rows[1]["lrm_robot/meta"])["seed"] == 100
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert {"next.reward", "next.done", "next.success", "reward.progress"} <= stats.keys()
    assert _no_nan(stats)
    assert stats["next.success"]["max"] == [1.0] or stats["next.success"]["max"] == [True]


def test_fps_override_names_and_no_rewards_by_default(stored, tmp_path: Path) -> None:
    store, episodes = stored
    names = [f"joint_{i}" for i in range(STATE_DIM)]
    out = store.export_lerobot(tmp_path / "ds", repo_id=REPO_ID, episodes=[1], fps=30, state_names=names)
    dataset = _load(out)
    assert dataset.fps == 30
    assert len(dataset) == LENGTHS[1]
    assert dataset.features["observation.state"]["names"] == names
    assert not any(key.startswith("reward.") for key in dataset.features)
    assert dataset[LENGTHS[1] - 1]["timestamp"].item() == pytest.approx((LENGTHS[1] - 1) / 30, abs=1e-6)
    assert dataset[0]["task"] == TASKS[1]


def test_video_export_loads_back_lossy(stored, tmp_path: Path) -> None:
    store, episodes = stored
    out = export_lerobot(store, tmp_path / "ds", repo_id=REPO_ID, episodes=[0], video=True)
    assert sorted(p.parent.parent.name for p in (out / "videos").rglob("*.mp4")) == sorted(
        f"observation.images.{c}" for c in CAMERAS
    )
    dataset = _load(out, video_backend="pyav")
    assert len(dataset) == LENGTHS[0]
    first = dataset[0]["observation.images.base_camera"]
    assert first.shape == (3, *CAMERAS["base_camera"])
    assert not np.array_equal(_pixels(first), episodes[0].images["base_camera"][0])  # why images are the default


def test_refuses_a_non_empty_out_dir_unless_overwrite(stored, tmp_path: Path) -> None:
    store, _ = stored
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty") as err:
        export_lerobot(store, out, repo_id=REPO_ID, episodes=[1])
    assert "\n" not in str(err.value)
    assert (out / "keep.txt").read_text() == "mine"

    # overwrite replaces only an earlier export (it holds the marker), never a folder of someone else's
    with pytest.raises(ExportError, match="has no .lrm-robot-output, so lrm-robot did not export it"):
        export_lerobot(store, out, repo_id=REPO_ID, episodes=[1], overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"

    export_lerobot(store, tmp_path / "ds2", repo_id=REPO_ID, episodes=[0])
    export_lerobot(store, tmp_path / "ds2", repo_id=REPO_ID, episodes=[1], overwrite=True)
    assert _load(tmp_path / "ds2").num_episodes == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "ds2"]  # no staging folder left behind


def test_empty_or_unknown_selection_is_refused(stored, tmp_path: Path) -> None:
    store, _ = stored
    with pytest.raises(ExportError, match="no episodes selected"):
        export_lerobot(store, tmp_path / "a", episodes=[])
    with pytest.raises(StoreError, match="episode index 99 is out of range"):
        export_lerobot(store, tmp_path / "b", episodes=[0, 99])
    with pytest.raises(ExportError, match="selected twice"):
        export_lerobot(store, tmp_path / "c", episodes=[0, 0])
    with pytest.raises(ExportError, match="whole number"):
        export_lerobot(store, tmp_path / "d", episodes=[0], fps=7.5)
    assert list(tmp_path.iterdir()) == []


class _DroppedCamera:
    """The real store, except that one episode's frames lack a camera (an older recording, say)."""

    def __init__(self, store: EpisodeStore, broken: int) -> None:
        self._store, self._broken = store, broken

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def iter_frames(self, index: int):
        for frame in self._store.iter_frames(index):
            if index == self._broken:
                frame.images.pop("hand_camera")
            yield frame


def test_mismatching_episode_is_named_and_nothing_is_left(stored, tmp_path: Path) -> None:
    store, _ = stored
    with pytest.raises(ExportError, match=r"^episode 2 frame 0: cameras \['base_camera'\] differ") as err:
        export_lerobot(_DroppedCamera(store, broken=2), tmp_path / "ds", episodes=[0, 2])
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def _tiny_store(path: Path, timestamps: list[np.ndarray], *, fps: float | None = None) -> EpisodeStore:
    """A store of small single-camera episodes with the given timestamps (for the fps inference)."""
    rng = np.random.default_rng(3)
    with EpisodeStore.open(path, mode="a", fps=fps) as store:
        for ts in timestamps:
            n = len(ts)
            store.append(Episode(
                meta=EpisodeMeta(task="pick up the red cube", source="sim", oracle_success=True),
                images={"base_camera": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)},
                state=np.zeros((n, 2), np.float32), action=np.zeros((n, 1), np.float32),
                timestamp=np.asarray(ts, dtype=np.float64),
            ))
    return EpisodeStore.open(path, mode="r")


def test_fps_is_inferred_from_the_timestamps(tmp_path: Path) -> None:
    # a robot's wall clock: 15 fps with a little jitter, and no fps recorded in the store
    rng = np.random.default_rng(0)
    steady = [np.arange(n) / 15 + rng.uniform(-0.005, 0.005, n) for n in (12, 9)]
    store = _tiny_store(tmp_path / "steady.zarr", steady)
    assert store.fps is None
    assert _load(export_lerobot(store, tmp_path / "a", repo_id=REPO_ID)).fps == 15

    # frames that arrive late drift from frame_index / fps: refused in one line unless fps is given
    late = np.arange(10) / 15
    late[6:] += 0.2
    store = _tiny_store(tmp_path / "late.zarr", [np.arange(8) / 15, late], fps=15)
    with pytest.raises(ExportError, match=r"timestamps of episodes 1 are irregular .*pass --fps \(the store says 15\)") as err:
        export_lerobot(store, tmp_path / "b", repo_id=REPO_ID)
    assert "\n" not in str(err.value)
    assert _load(export_lerobot(store, tmp_path / "b", repo_id=REPO_ID, fps=15)).fps == 15

    # no intervals at all (the store itself refuses timestamps that do not increase)
    store = _tiny_store(tmp_path / "single.zarr", [np.zeros(1), np.zeros(1)])
    with pytest.raises(ExportError, match=r"^no episode has two timestamps to infer fps from; pass --fps$"):
        export_lerobot(store, tmp_path / "c", repo_id=REPO_ID)
    # 7.5 fps cannot be written as LeRobot's whole-number fps
    store = _tiny_store(tmp_path / "half.zarr", [np.arange(6) / 7.5])
    with pytest.raises(ExportError, match=r"timestamps give 7.5 fps and LeRobot stores a whole number"):
        export_lerobot(store, tmp_path / "c", repo_id=REPO_ID)
    assert not (tmp_path / "c").exists()


def test_aborted_episodes_are_left_out_unless_asked_and_no_column_holds_nan(stored, tmp_path: Path) -> None:
    store, episodes = stored
    dataset = _load(export_lerobot(store, tmp_path / "a", repo_id=REPO_ID, success="accepted"))
    assert [dataset.meta.episodes[i]["lrm_robot/store_index"] for i in range(dataset.num_episodes)] == [0, 1, 2]
    # next.reward: episode 1 recorded no dense_reward, so "auto" falls to ... none common: no column
    assert "next.reward" not in dataset.features
    # success="accepted": the operator's verdict over the LRM's (episode 1), the LRM's alone otherwise
    assert [dataset.meta.episodes[i]["lrm_robot/success"] for i in range(3)] == [True, True, True]
    columns = dataset.hf_dataset.with_format("numpy")
    for key, feature in dataset.features.items():
        if feature["dtype"] == "float32":
            assert not np.isnan(np.asarray(columns[key], dtype=np.float32)).any(), key

    dataset = _load(export_lerobot(store, tmp_path / "b", repo_id=REPO_ID, episodes=[3, 2], include_aborted=True))
    assert [dataset.meta.episodes[i]["lrm_robot/aborted"] for i in range(2)] == [True, False]
    assert dataset.features["next.reward"]["dtype"] == "float32"  # both recorded the dense reward
    with pytest.raises(ExportError, match=r"^every selected episode is aborted \(3\); include_aborted=True"):
        export_lerobot(store, tmp_path / "c", repo_id=REPO_ID, episodes=[3])
    with pytest.raises(ExportError, match=r"^episodes 1 recorded no 'progress' reward"):
        export_lerobot(store, tmp_path / "c", repo_id=REPO_ID, episodes=[0, 1], reward="progress")


def test_cli_selects_episodes_names_the_robot_and_lerobot_viz_plots_the_rewards(stored, tmp_path: Path) -> None:
    import subprocess
    import sys

    store, episodes = stored
    out = tmp_path / "ds"
    exe = Path(sys.executable).with_name("lrm-robot")
    names = ",".join(f"joint_{i}" for i in range(STATE_DIM))
    result = subprocess.run(
        [str(exe), "store", "export", str(store.path), "--output-dir", str(out), "--repo-id", REPO_ID,
         "--episodes", "2,0-1,3", "--reward", "progress", "--source", "demo", "--robot-type", "panda",
         "--state-names", names, "--task", TASKS[0], "--task", TASKS[2]],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    # 1 fails --task, 3 is aborted: left out and said so
    assert "leaving out 1 aborted episodes" in result.stdout
    dataset = _load(out)
    assert [dataset.meta.episodes[i]["lrm_robot/store_index"] for i in range(2)] == [2, 0]
    assert dataset.meta.robot_type == "panda"
    assert dataset.features["observation.state"]["names"] == names.split(",")
    assert dataset.fps == FPS  # from the timestamps
    first = episodes[2].rewards["progress"]
    assert dataset[0]["next.reward"].item() == _held(first)[1]

    # LeRobot's viewer script logs next.reward, next.done and next.success as time series
    viz = pytest.importorskip("lerobot.scripts.lerobot_dataset_viz")
    rerun_experimental = pytest.importorskip("rerun.experimental")
    rrd = viz.visualize_dataset(dataset, episode_index=0, mode="local", save=True, output_dir=tmp_path / "viz")
    logged = set(rerun_experimental.RrdReader(str(rrd)).stream().collect().schema().entity_paths())
    assert {"/next.reward", "/next.done", "/next.success"} <= logged


def test_the_setup_gives_lerobot_video_decoding_its_ffmpeg_libraries() -> None:
    """LeRobot decodes video with torchcodec, which loads FFmpeg's shared libraries when first imported
    and, where scripts/setup.sh did not install them, fails with a traceback for each version it tries."""
    from torchcodec._core import ops

    assert int(ops.ffmpeg_major_version) >= 4
