"""`lrm-robot eval-reward` end to end on a small synthetic store, and the suite's floors by hand."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
import yaml

from app.cli import main
from lrm.evaluation.reward_eval import ConstantRewardModel, RewardEvalConfig, evaluate_reward_model
from lrm.training.dataset import DatasetConfig
from recordings.episode import Episode, EpisodeMeta
from recordings.store import EpisodeStore
from tests.support.bar_store import bar_frame

TASKS = ("fill red", "fill green")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> pathlib.Path:
    """Bar episodes with the simulator-like traces the oracle reads: dense reward = bar fraction."""
    path = tmp_path_factory.mktemp("eval") / "store"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(path, fps=10.0, durable=False) as store:
        for task_id, task in enumerate(TASKS):
            for success in [True] * 5 + [False] * 4:
                n = int(rng.integers(12, 21))
                u = np.linspace(0.0, 1.0, n)
                fractions = u if success else u * rng.uniform(0.1, 0.5)
                store.append(
                    Episode(
                        meta=EpisodeMeta(task=task, source="sim", oracle_success=success),
                        images={"cam": np.stack([bar_frame(f, task_id, 16, rng) for f in fractions])},
                        state=fractions[:, None].astype(np.float32),
                        action=np.zeros((n, 1), np.float32),
                        timestamp=np.arange(n) / 10.0,
                        rewards={
                            "dense_reward": fractions.astype(np.float32),
                            "success": (fractions >= 1.0).astype(np.float32),
                        },
                    )
                )
    return path


def _config(tmp_path: pathlib.Path, store_path: pathlib.Path, backend_section: dict, **extra) -> pathlib.Path:
    backend_path = tmp_path / "backend.yaml"
    backend_path.write_text(yaml.safe_dump(backend_section))
    data = {
        "sources": [str(store_path)],
        "backend": str(backend_path),
        "dataset": {"val_fraction": 0.5, "seed": 3, "contrastive_pairs_per_episode": 6},
        "trajectory_modalities": ["progress", "completion"],
        "output_dir": str(tmp_path / "out"),
        **extra,
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_oracle_backend_scores_perfectly_end_to_end(tmp_path, store_path, capsys):
    config = _config(tmp_path, store_path, {"type": "oracle"})
    assert main(["eval-reward", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "oracle:" in printed and "ROC-AUC 1.000" in printed
    assert "paper's open-loop progress (progress mode): roc_auc 1.000, pairwise_acc_pct 100.000" in printed
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["backend"]["backend"] == "oracle" and report["split"] == "val"
    # metrics.jsonl (the default --report-to): the summary numbers as one row
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 0 and row["episodes"] == report["episodes"]["count"] and "wall_time" in row
    assert row["progress/mae"] == report["progress"]["mae"] and row["completion/f1"] == 1.0
    assert row["trajectory/progress/roc_auc"] == 1.0 and row["contrastive/direction_accuracy"] == 1.0
    eps = report["episodes"]
    # stratified held-out half: of 5 successes and 4 failures per task, 2-3 each
    assert 6 <= eps["count"] <= 12 and 0 < eps["successes"] < eps["count"]
    # the oracle's dense reward is the bar fraction, which is exactly time-based progress on successes
    prog = report["progress"]
    assert prog["exact_accuracy"] == 1.0 and prog["accuracy_within_0.1"] == 1.0
    # keyframe t = round(p (T - 1)) sits within half a frame of p: |t / (T - 1) - p| <= 0.5 / 11 here
    assert 0.0 < prog["mae"] <= prog["rmse"] <= 0.5 / 11 and prog["n"] == 11 * eps["successes"]
    curve = prog["cumulative_curve"]
    assert curve["tolerance"][5] == 0.05 and curve["accuracy"][5] == 1.0 and curve["accuracy"][0] < 1.0
    comp = report["completion"]
    assert (comp["accuracy"], comp["precision"], comp["recall"], comp["f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert set(comp["accuracy_by_kind"]) == {"final", "non_final", "failed", "clipped"}
    cont = report["contrastive"]
    assert cont["direction_accuracy"] == 1.0 and cont["kendall_tau"] == pytest.approx(1.0)
    assert cont["spearman_rho"] == pytest.approx(1.0) and cont["ranked_episodes"] == eps["successes"]
    traj = report["trajectory"]["progress"]
    assert traj["n_trajectories"] == eps["count"] and traj["oracle_values"] == "dense_reward trace"
    assert traj["roc_auc"] == 1.0 and traj["pairwise_accuracy"] == 1.0
    assert traj["pearson_global"] == pytest.approx(1.0) and traj["pearson_per_trajectory"] == pytest.approx(1.0)
    assert traj["monotonicity_success"] == 1.0 and traj["voc"] == pytest.approx(1.0)
    assert len(traj["roc_curve"]["fpr"]) == len(traj["roc_curve"]["tpr"]) >= 2
    # completion along a trajectory is 1 on the last frame of successes only: its max separates perfectly
    assert report["trajectory"]["completion"]["n_success"] == eps["successes"]
    assert len(report["trajectories"]) == eps["count"]
    first = report["trajectories"][0]
    assert first["steps"][-1] == first["length"] - 1 and len(first["rewards"]["progress"]) == first["length"]
    # the paper's definitions beside ours: the oracle's progress is the dense reward itself, so it
    # follows the cumulative oracle reward exactly, and the final scores separate the outcomes
    reference = report["openloop_reference"]
    assert "compute_openloop_metrics.py" in reference["source"]
    assert f"in {eps['count']} of {eps['count']} trajectories" in reference["oracle"]
    ref_progress = reference["progress"]
    assert ref_progress["mode"] == "progress" and ref_progress["meta"]["n_trajectories"] == eps["count"]
    assert ref_progress["metrics"]["roc_auc"] == 1.0 and ref_progress["metrics"]["pairwise_acc_pct"] == 100.0
    assert ref_progress["metrics"]["per_traj_pearson"] == pytest.approx(1.0)
    assert -1.0 <= ref_progress["metrics"]["global_pearson"] <= 1.0
    assert reference["completion"]["metrics"]["roc_auc"] == 1.0  # 1 at the last frame of successes only
    for name in ("progress_cumulative_accuracy.png", "trajectories_progress.png", "roc_progress.png"):
        png = tmp_path / "out" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in report["plots"]


def test_untrained_lite_backend_gives_sane_values(tmp_path, store_path):
    torch = pytest.importorskip("torch")
    from lrm.backends.lite import LiteRewardModel
    from lrm.backends.lite_config import LiteConfig

    torch.manual_seed(0)
    checkpoint = tmp_path / "lite"
    LiteRewardModel(LiteConfig(image_size=(16, 16), cnn_channels=[4, 8], feature_dim=8, hidden_dim=16, tasks=list(TASKS))).save_pretrained(checkpoint)
    backend = {"type": "lite", "lite": {"checkpoint": str(checkpoint)}}
    config = _config(tmp_path, store_path, backend, split="all", every=3, trajectory_score="final", max_episodes=6)
    assert main(["eval-reward", "--config", str(config), "--output-dir", str(tmp_path / "lite_out")]) == 0
    report = json.loads((tmp_path / "lite_out" / "metrics.json").read_text())
    assert report["backend"]["backend"] == "lite" and report["episodes"]["count"] == 6
    assert report["episodes"]["successes"] == 3  # the pick alternates successes and failures
    prog = report["progress"]
    assert 0.0 <= prog["mae"] <= prog["rmse"] <= 1.0
    acc = [prog[f"accuracy_within_{t}"] for t in ("0.1", "0.2", "0.3")]
    assert prog["exact_accuracy"] <= acc[0] <= acc[1] <= acc[2] <= 1.0
    assert 0.0 <= report["completion"]["accuracy"] <= 1.0
    assert 0.0 <= report["contrastive"]["direction_accuracy"] <= 1.0
    traj = report["trajectory"]["progress"]
    assert traj["trajectory_score"] == "final" and 0.0 <= traj["roc_auc"] <= 1.0
    t0 = report["trajectories"][0]
    assert t0["steps"][:2] == [0, 3] and t0["steps"][-1] == t0["length"] - 1
    assert all(0.0 <= v <= 1.0 for v in t0["rewards"]["progress"])


def test_constant_floor_by_hand(store_path):
    store = EpisodeStore.open(store_path, "r")
    config = RewardEvalConfig(
        sources=[str(store_path)],
        dataset=DatasetConfig(val_fraction=0.5, seed=3),
        trajectory_modalities=["progress", "contrastive"],
    )
    report = evaluate_reward_model(ConstantRewardModel(), store, config)
    store.close()
    prog = report["progress"]
    # 0.5 against 0.0, 0.1, ..., 1.0: errors .5 .4 .3 .2 .1 0 .1 .2 .3 .4 .5
    assert prog["mae"] == pytest.approx(3.0 / 11)
    assert prog["exact_accuracy"] == pytest.approx(1 / 11) and prog["accuracy_within_0.1"] == pytest.approx(3 / 11)
    comp = report["completion"]  # always "no": nothing predicted positive
    assert math.isnan(comp["precision"]) and comp["recall"] == 0.0 and comp["f1"] == 0.0
    assert comp["accuracy"] == pytest.approx(comp["tn"] / comp["n"])
    cont = report["contrastive"]  # always "current": right on one order of every pair
    assert cont["direction_accuracy"] == pytest.approx(0.5)
    assert math.isnan(cont["kendall_tau"]) and cont["ranked_episodes"] == 0  # both orders cancel: no ranking
    traj = report["trajectory"]["progress"]
    assert traj["roc_auc"] == 0.5 and traj["pairwise_accuracy"] == 0.0
    assert math.isnan(traj["voc"]) and traj["monotonicity_success"] == 1.0
    # The paper's definitions. Progress: every final score is 0.5, so ROC-AUC halves every tie (0.5)
    # and pairwise accuracy counts them wrong (0 %); a constant trace has no per-trajectory Pearson
    # (the key is absent), while the sums 0.5 x length still vary across trajectories.
    ref = report["openloop_reference"]["progress"]["metrics"]
    assert ref["roc_auc"] == 0.5 and ref["pairwise_acc_pct"] == 0.0 and "per_traj_pearson" not in ref
    assert "global_pearson" in ref
    # Contrastive: the scores are the first query's placeholder 0, then +1 at every step. The bar
    # fraction starts at 0 and rises every frame, so the per-step oracle rewards are 0, then > 0:
    # every pair agrees (0 with 0, a tie that counts as right; +1 with progress), every progress
    # step is recalled, and the cumulative score never falls.
    ref = report["openloop_reference"]["contrastive"]
    assert ref["mode"] == "comparison"
    assert ref["metrics"] == {"direction_acc_pct": 100.0, "progress_recall_pct": 100.0, "monotonicity_success": 1.0}


class VideoRecorder(ConstantRewardModel):
    """A constant floor that wants the video, and notes the rate each request says it was taken at."""

    needs_video = True

    def __init__(self) -> None:
        super().__init__()
        self.rates: dict[str, set[float | None]] = {}

    def score(self, requests):  # noqa: ANN001, ANN201
        for r in requests:
            self.rates.setdefault(r.modality, set()).add(r.video_fps)
        return super().score(requests)


def test_video_models_are_told_the_rate_of_their_frames(store_path):
    store = EpisodeStore.open(store_path, "r")
    config = RewardEvalConfig(
        sources=[str(store_path)], dataset=DatasetConfig(val_fraction=0.5, seed=3), every=3, max_episodes=2,
        modalities=["completion"], trajectory_modalities=["progress"], contrastive_ranking=False,
    )
    model = VideoRecorder()
    evaluate_reward_model(model, store, config)
    store.close()
    # the store records 10 fps: an example's video is every frame up to it (10 fps), a trajectory's
    # the query frames, every 3rd (10 / 3 fps)
    assert model.rates == {"completion": {10.0}, "progress": {10.0 / 3}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"splitt": "val"}, "splitt"),
        ({"sources": ["/nonexistent/store"]}, "/nonexistent/store does not exist"),
        ({"backend": "/nonexistent/backend.yaml"}, "config file not found"),
        ({"dataset": {"val_fraction": 0.0}}, "no held-out"),
        ({"every": 0}, "key 'every': must be at least 1, got 0"),
        ({"trajectory_modalities": ["vibes"]}, "unknown modalities"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, store_path, capsys, change, message):
    config = _config(tmp_path, store_path, {"type": "oracle"}, **change)
    assert main(["eval-reward", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrm-robot eval-reward: error:") and message in err and "\n" not in err


def test_oracle_without_traces_is_one_line(tmp_path, capsys):
    from tests.support.bar_store import make_bar_store

    make_bar_store(tmp_path / "plain", successes=3, failures=2, size=8).close()
    config = _config(tmp_path, tmp_path / "plain", {"type": "oracle"})
    assert main(["eval-reward", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no 'dense_reward' trace" in err and "\n" not in err


def test_tiny_qwen3vl_backend_end_to_end(tmp_path, store_path, tiny_qwen3vl):
    """The LRM backend through the same command: every answer parsed or counted, values in range."""
    backend = {
        "type": "qwen3vl",
        "qwen3vl": {
            "model": str(tiny_qwen3vl.base),
            "adapters": {m: str(p) for m, p in tiny_qwen3vl.adapters.items()},
            "mode": "logits",
            "reasoning": False,
            "image_size": [32, 32],
            "max_batch_size": 16,
        },
    }
    config = _config(
        tmp_path, store_path, backend, max_episodes=2, every=6, contrastive_ranking=False, batch_requests=16,
        trajectory_modalities=["progress"], dataset={"val_fraction": 0.5, "seed": 3, "contrastive_pairs_per_episode": 2,
                                                     "clip_fractions": []},
    )
    assert main(["eval-reward", "--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["backend"]["backend"] == "qwen3vl" and report["backend"]["mode"] == "logits"
    assert report["episodes"]["count"] == 2 and report["episodes"]["successes"] == 1
    assert report["progress"]["n"] == 11 and 0.0 <= report["progress"]["mae"] <= 1.0
    assert report["completion"]["n"] == 22 and report["contrastive"]["n"] == 4
    assert report["contrastive"]["round_robin_episodes"] == 0
    assert all(-1.0 <= v <= 1.0 for t in report["trajectories"] for v in t["rewards"]["progress"])
    assert report["timing"]["requests"] == 11 + 22 + 4 + sum(len(t["steps"]) for t in report["trajectories"])


def _unrendered_store(path: pathlib.Path, rendered) -> pathlib.Path:
    """The bar episodes of `store_path`, but only `rendered(n)` frames of each hold a rendered image."""
    rng = np.random.default_rng(1)
    with EpisodeStore.create(path, fps=10.0, durable=False) as store:
        for success in [True] * 4 + [False] * 4:
            n = 15
            u = np.linspace(0.0, 1.0, n)
            fractions = u if success else u * 0.3
            real = np.isin(np.arange(n), rendered(n))
            images = np.stack([bar_frame(f, 0, 16, rng) for f in fractions])
            images[~real] = 0
            store.append(
                Episode(
                    meta=EpisodeMeta(task=TASKS[0], source="sim", oracle_success=success),
                    images={"cam": images},
                    state=fractions[:, None].astype(np.float32),
                    action=np.zeros((n, 1), np.float32),
                    timestamp=np.arange(n) / 10.0,
                    rewards={"dense_reward": fractions.astype(np.float32)},
                    real={"cam": real},
                )
            )
    return path


class _BlackDetector(ConstantRewardModel):
    """Says 'completed' exactly on black frames: a judge fooled by placeholders would score them."""

    def score(self, requests):
        out = super().score(requests)
        for req, reward in zip(requests, out, strict=True):
            if not np.asarray(req.frames["current"]).any():
                raise AssertionError("an unrendered frame was sent to the judge")
        return out


def test_eval_reward_scores_only_rendered_frames(tmp_path):
    path = _unrendered_store(tmp_path / "s", lambda n: [t for t in range(n) if t % 2 == 0 or t == n - 1])
    config = RewardEvalConfig(sources=[str(path)], dataset=DatasetConfig(val_fraction=0.5, seed=3),
                              trajectory_modalities=["progress"])
    with EpisodeStore.open(path, "r") as store:
        report = evaluate_reward_model(_BlackDetector(), store, config)
    left = report["unrendered"]
    assert left["examples_left_out"] > 0 and left["trajectory_frames_left_out"] > 0
    assert report["progress"]["n"] > 0 and all(
        t % 2 == 0 or t == 14 for tr in report["trajectories"] for t in tr["steps"]
    )


def test_eval_reward_refuses_when_nothing_was_rendered(tmp_path):
    path = _unrendered_store(tmp_path / "s", lambda n: [])
    config = RewardEvalConfig(sources=[str(path)], dataset=DatasetConfig(val_fraction=0.5, seed=3),
                              trajectory_modalities=["progress"])
    with EpisodeStore.open(path, "r") as store, pytest.raises(ValueError, match="was rendered"):
        evaluate_reward_model(ConstantRewardModel(), store, config)
