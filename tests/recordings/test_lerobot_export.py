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
LENGTHS = [6, 4, 8]
TASKS = ["pick up the red cube", "push the cube to the goal", "stack the red cube on the green cube"]
STATE_DIM, ACTION_DIM = 5, 3
REPO_ID = "local/lrm-robot-test"


def _episode(rng: np.random.Generator, i: int) -> Episode:
    length = LENGTHS[i]
    progress = np.full(length, np.nan, dtype=np.float32)
    progress[::2] = rng.random(len(progress[::2]), dtype=np.float32)
    return Episode(
        meta=EpisodeMeta(task=TASKS[i], source="demo", round=i, seed=100 + i, lrm_verdict=i % 2 == 0, extra={"k": i}),
        images={c: rng.integers(0, 256, (length, h, w, 3), dtype=np.uint8) for c, (h, w) in CAMERAS.items()},
        state=rng.standard_normal((length, STATE_DIM)).astype(np.float32),
        action=rng.standard_normal((length, ACTION_DIM)).astype(np.float32),
        timestamp=np.arange(length, dtype=np.float64) / FPS,
        rewards={"prog": progress} if i != 1 else {},
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


def _load(root: Path, **kwargs):
    return lerobot_dataset.LeRobotDataset(REPO_ID, root=root, **kwargs)


def _pixels(image: torch.Tensor) -> np.ndarray:
    """Loader image (float32 CHW in [0, 1]) -> the uint8 HWC bytes it was made from."""
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_selection_reads_back_frame_exact(stored, tmp_path: Path) -> None:
    store, episodes = stored
    selection = [2, store.episodes()[0]]  # an index and a record, exported in this order
    out = export_lerobot(store, tmp_path / "ds", repo_id=REPO_ID, episodes=selection, rewards=True)

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
            np.testing.assert_array_equal(item["observation.state"].numpy(), source.state[t])
            np.testing.assert_array_equal(item["action"].numpy(), source.action[t])
            # NaN where the reward model was not queried; assert_array_equal treats NaN == NaN.
            np.testing.assert_array_equal(item["reward.prog"].numpy(), source.rewards["prog"][t])
            expected_index += 1


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
