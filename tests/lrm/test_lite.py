"""The compact reward model (`lite`): interface, checkpoints, training on a synthetic bar store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.lite import LiteRewardModel, trained_modalities
from lrm.backends.lite_config import LiteConfig, LiteTrainConfig
from lrm.training.dataset import DatasetConfig, build_dataset
from lrm.training.lite_train import evaluate_lite, example_losses, train_lite
from lrm.types import RequestError, RewardRequest
from tests.support.bar_store import make_bar_store

SMALL = LiteConfig(image_size=(32, 32), cnn_channels=[8, 16, 16], feature_dim=32, hidden_dim=64)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    store = make_bar_store(
        tmp_path_factory.mktemp("bars") / "store", tasks=("fill red", "fill green"), successes=6, failures=3, size=32
    )
    yield build_dataset(store, DatasetConfig(val_fraction=0.3, seed=0, contrastive_pairs_per_episode=10))
    store.close()


def _requests(rng: np.random.Generator, task: str = "fill red") -> list[RewardRequest]:
    def img(h=40, w=48):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    a, b, first = img(), img(), img()
    return [
        RewardRequest("progress", {"current": a, "first": first}, task),
        RewardRequest("completion", {"current": a}, task),
        RewardRequest("contrastive", {"previous": b, "current": a}, task),
        RewardRequest("contrastive", {"previous": a, "current": b, "first": first}, "a task never seen"),
        RewardRequest("progress", {"current": b, "first": first}, "a task never seen"),
    ]


def test_score_semantics():
    torch.manual_seed(0)
    model = LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill red"]}))
    requests = _requests(np.random.default_rng(0))
    rewards = model.score(requests)
    prog, comp, c1, c2, prog2 = rewards
    assert set(prog.probs) == {f"{v / 10:.1f}" for v in range(11)}
    assert sum(prog.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert prog.value == pytest.approx(sum(float(k) * p for k, p in prog.probs.items()), abs=1e-5)
    assert 0.0 <= prog.value <= 1.0 and 0.0 <= prog2.value <= 1.0
    assert "completion_progress" in json.loads(prog.raw_text)
    assert comp.value == pytest.approx(comp.probs["yes"]) and comp.probs["yes"] + comp.probs["no"] == pytest.approx(1)
    assert json.loads(comp.raw_text)["task_completed"] in ("yes", "no")
    assert c1.value == pytest.approx(c1.probs["2"] - c1.probs["1"], abs=1e-6)
    assert json.loads(c1.raw_text)["more_complete_image"] in (1, 2)
    # antisymmetric: swapping the two frames flips the answer (same task embedding needed)
    pair = requests[2].frames
    swapped = model.score([RewardRequest("contrastive", {"previous": pair["current"], "current": pair["previous"]}, "fill red")])[0]
    assert swapped.value == pytest.approx(-c1.value, abs=1e-5)
    # a batch mixing contrastive requests with and without the anchor, in either order
    flipped = model.score([requests[3], requests[2]])
    assert [r.value for r in flipped] == pytest.approx([c2.value, c1.value], abs=1e-6)
    assert model.score([]) == []
    with pytest.raises(RequestError, match="needs frame"):
        model.score([RewardRequest("progress", {"current": np.zeros((8, 8, 3), np.uint8)}, "t")])


def test_training_steps_lower_the_loss_deterministically(dataset):
    cfg = LiteTrainConfig(steps=40, batch_size=16, lr=2e-3, log_every=10, shift_augment=1)
    torch.manual_seed(123)
    before_model = LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill red", "fill green"]}))
    before = example_losses(before_model, dataset, dataset.train)
    model, history = train_lite(dataset, cfg, model=before_model)
    after = example_losses(model, dataset, dataset.train)
    assert set(before) == {"progress", "completion", "contrastive"}
    assert sum(after.values()) < 0.8 * sum(before.values())
    assert history["loss"][-1] < history["loss"][0]
    # the same seed and data give the same run
    torch.manual_seed(123)
    again_model = LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill red", "fill green"]}))
    _, again = train_lite(dataset, LiteTrainConfig(steps=40, batch_size=16, lr=2e-3, log_every=10, shift_augment=1),
                          model=again_model)
    assert again["loss"] == history["loss"]


def test_save_reload_identical_and_backend(tmp_path):
    torch.manual_seed(1)
    model = LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill red"]}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    requests = _requests(np.random.default_rng(5))
    expected = model.score(requests)
    out = model.save_pretrained(tmp_path / "ckpt")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    reloaded = LiteRewardModel.from_pretrained(out)
    assert reloaded.config == model.config
    got = reloaded.score(requests)
    assert [r.value for r in got] == [r.value for r in expected]
    assert [r.probs for r in got] == [r.probs for r in expected]
    backend = make_reward_backend(RewardBackendConfig(type="lite", lite=_lite(out)))
    assert [r.value for r in backend.score(requests)] == [r.value for r in expected]
    cfg = RewardBackendConfig(type="lite", lite=_lite(out))
    assert cfg.modalities == ("contrastive", "progress", "completion")
    assert cfg.trace_name("progress") == "lite_progress"
    assert cfg.describe()["checkpoint"] == str(out)
    with pytest.raises(FileNotFoundError, match="not a lite"):
        LiteRewardModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="lite.checkpoint"):
        make_reward_backend(RewardBackendConfig(type="lite"))


def test_a_folder_of_folds_loads_as_an_ensemble_that_averages_every_answer(tmp_path):
    from lrm.backends.lite import LiteEnsemble

    members = []
    for j in range(2):
        torch.manual_seed(10 + j)
        model = LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill red"]}))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        members.append(model)
        model.save_pretrained(tmp_path / "judge" / f"fold-{j}")
    (tmp_path / "judge" / "folds.json").write_text(json.dumps({"folds": 2, "held_out": {"7": 0, "9": 1}}))
    requests = _requests(np.random.default_rng(6))
    backend = make_reward_backend(RewardBackendConfig(type="lite", lite=_lite(tmp_path / "judge")))
    assert isinstance(backend, LiteEnsemble) and sorted(backend.held_out) == [7, 9]
    each = [m.score(requests) for m in members]
    for i, got in enumerate(backend.score(requests)):  # every modality: the mean value and mean option probabilities
        assert got.value == pytest.approx(np.mean([e[i].value for e in each]))
        assert got.probs.keys() == each[0][i].probs.keys()
        assert all(got.probs[k] == pytest.approx(np.mean([e[i].probs[k] for e in each])) for k in got.probs)
    (tmp_path / "judge" / "folds.json").write_text(json.dumps({"folds": 2, "held_out": {"7": 5}}))
    with pytest.raises(ValueError, match="names a fold outside 0..1"):
        make_reward_backend(RewardBackendConfig(type="lite", lite=_lite(tmp_path / "judge")))
    (tmp_path / "judge" / "folds.json").write_text("{")
    with pytest.raises(ValueError, match="folds.json: not a folds record"):
        make_reward_backend(RewardBackendConfig(type="lite", lite=_lite(tmp_path / "judge")))


def _lite(path):
    from lrm.backends.lite_config import LiteBackendConfig

    return LiteBackendConfig(checkpoint=str(path))


def test_short_training_learns_visible_progress(dataset, tmp_path):
    """A bar that grows with time: after a short CPU training, held-out progress ranks frames in time order."""
    torch.manual_seed(0)
    untrained = evaluate_lite(
        LiteRewardModel(LiteConfig.from_json({**SMALL.to_json(), "tasks": ["fill green", "fill red"]})), dataset, dataset.val
    )
    model, history = train_lite(
        dataset,
        LiteTrainConfig(steps=150, batch_size=32, log_every=50, seed=0),
        SMALL,
        output_dir=tmp_path / "lite",
    )
    val = history["val"]
    assert val["progress_spearman"] > 0.5
    assert val["progress_mae"] < 0.2
    assert val["contrastive_accuracy"] > 0.9
    assert val["completion_balanced_accuracy"] > 0.8
    assert val["progress_mae"] < 0.5 * untrained["progress_mae"]
    assert history["seconds"] < 120
    assert (tmp_path / "lite" / "history.json").is_file()
    assert trained_modalities(tmp_path / "lite") == tuple(history["trained_modalities"])
    assert set(history["trained_modalities"]) == {"contrastive", "progress", "completion"}
    assert LiteRewardModel.from_pretrained(tmp_path / "lite").config.tasks == ["fill green", "fill red"]
    # held-out episodes only: none of the validation episodes was trained on
    assert not {ex.episode for ex in dataset.val} & {ex.episode for ex in dataset.train}


def test_config_checks():
    with pytest.raises(ValueError, match="image_size"):
        LiteConfig(image_size=(4, 4))
    with pytest.raises(ValueError, match="unknown lite config keys"):
        LiteConfig.from_json({"colour": "red"})
    assert LiteConfig.from_json(SMALL.to_json()) == SMALL


def test_shipped_configs_load():
    from pathlib import Path

    from common.config import load_config
    from lrm.training.lite_runs import LiteTrainRun

    root = Path(__file__).resolve().parents[2] / "configs" / "lrm"
    backend = load_config(root / "backends" / "lite.yaml", RewardBackendConfig)
    assert backend.type == "lite" and backend.lite.checkpoint
    run = load_config(root / "train" / "lite_pickcube.yaml", LiteTrainRun)
    assert run.model.image_size == (64, 64) and run.dataset.num_keyframes == 11 and run.train.steps > 0


class _InvertedTeacher:
    """A frame-based 'backend' that reads the bar from the pixels and reports progress backwards."""

    needs_video = False

    @staticmethod
    def _fraction(image: np.ndarray) -> float:
        return float((image.max(-1) > 100).any(0).mean())

    def score(self, requests):
        from lrm.types import Reward

        out = []
        for r in requests:
            f = self._fraction(r.frames["current"])
            if r.modality == "progress":
                out.append(Reward(1.0 - f, "", None))
            elif r.modality == "completion":
                out.append(Reward(0.0, "", {"yes": 0.25, "no": 0.75}))
            else:
                out.append(Reward(float(np.sign(self._fraction(r.frames["previous"]) - f)), "", None))
        return out


def test_distillation_follows_the_teacher(dataset):
    from lrm.training.lite_train import distill_lite, teacher_labels

    labelled = teacher_labels(dataset, dataset.train[:30], _InvertedTeacher())
    assert [ex.episode for ex in labelled] == [ex.episode for ex in dataset.train[:30]]
    comp = [ex for ex in labelled if ex.modality == "completion"]
    assert comp and all(ex.label == 0.25 and ex.kind.startswith("teacher:") for ex in comp)
    model, history = distill_lite(dataset, _InvertedTeacher(), LiteTrainConfig(steps=150, batch_size=32, seed=0), SMALL)
    # judged against the ground truth, the student learnt the teacher's reversed progress
    assert history["val"]["progress_spearman"] < -0.5
    assert history["val"]["contrastive_accuracy"] < 0.1
    assert history["teacher"] == "_InvertedTeacher"
    comp_val = [ex for ex in dataset.val if ex.modality == "completion"]
    p_yes = [r.value for r in model.score(dataset.requests(comp_val))]
    assert np.mean(p_yes) == pytest.approx(0.25, abs=0.1)  # soft targets are matched, not re-balanced

    class _VideoTeacher:
        needs_video = True

    with pytest.raises(ValueError, match="video"):
        teacher_labels(dataset, dataset.train[:2], _VideoTeacher())
