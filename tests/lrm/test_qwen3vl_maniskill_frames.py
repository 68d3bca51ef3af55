"""The qwen3vl backend scoring REAL ManiSkill frames, in both scoring modes (issue 3, point 8).

A PickCube-v1 env renders its camera at 64x64 (CPU simulation, lavapipe); the
first frame and the frames of 15 seeded random steps are scored through the
production path (the tiny random Qwen3-VL checkpoint with its three LoRA
adapters, loaded by `Qwen3VLRewardModel`) for all three modalities, in
`generate` and in `logits` mode. The model is random, so the checks are about
the machinery on real camera frames: request order and count, ranges per
modality, option probabilities, greedy determinism, the parse-failure policy
and its counters, and that frames of the env's size are resized per config.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lrm.backends.parsing import fallback_value, parse_answer
from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel
from lrm.types import MODALITIES, Reward, RewardRequest
from sim.maniskill_env import SimEnvConfig, make_sim_env
from tests.support.tiny_reward_models import TinyModelPaths

pytestmark = [pytest.mark.sim, pytest.mark.filterwarnings("ignore::DeprecationWarning:mani_skill")]

ENV_ID = "PickCube-v1"
CAMERA = 64  # the env renders 64x64 frames ...
IMAGE_SIZE = (32, 64)  # ... the LRM sees (height, width) = 32x64: a resize on both axes, not a no-op
STEPS = 15
SEED = 7


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while this module runs, restored afterwards.

    The tiny model gains nothing from more, and on a busy 2-core machine (another
    pytest, the renderer) OpenMP's spinning threads made one `score` call take
    1-10 s instead of 0.2 s. Only the runtime is at stake, not the results checked.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclasses.dataclass(frozen=True)
class Episode:
    task: str
    first: np.ndarray  # the frame after reset
    frames: list[np.ndarray]  # the frame after each of the STEPS steps
    success: list[bool]


@pytest.fixture(scope="module")
def episode() -> Episode:
    """Reset a PickCube-v1 env with a seed, capture, take seeded random steps capturing each frame, close."""
    rng = np.random.default_rng(SEED)
    with make_sim_env(SimEnvConfig(env_id=ENV_ID, camera_width=CAMERA, camera_height=CAMERA)) as env:
        camera = env.camera_names[0]
        env.reset(seed=SEED)
        first = env.capture()[camera]
        low, high = env.action_space.low, env.action_space.high
        frames, success = [], []
        for _ in range(STEPS):
            # pd_joint_pos: random joint targets around the current pose, random gripper command.
            qpos = env.raw_env.agent.robot.get_qpos()[0].cpu().numpy()[: env.action_shape[0] - 1]
            arm = qpos + rng.uniform(-0.4, 0.4, size=qpos.shape)
            action = np.clip(np.hstack([arm, rng.uniform(-1.0, 1.0)]), low, high).astype(np.float32)
            env.step(action)
            frames.append(env.capture()[camera])
            success.append(env.success)
        task = env.task
    return Episode(task=task, first=first, frames=frames, success=success)


def real_requests(ep: Episode) -> list[RewardRequest]:
    """Interleaved modalities over the episode, each request tagged with its index.

    Contrastive: previous + current (with and without the first frame as anchor);
    progress: current + first, with distinct previous values (the fallback of an
    unparseable answer, so a fallback also reveals which request it belongs to);
    completion: current only.
    """
    f, first, task = ep.frames, ep.first, ep.task
    specs: list[tuple[str, dict[str, np.ndarray], float | None]] = [
        ("contrastive", {"previous": first, "current": f[2]}, None),
        ("progress", {"current": f[1], "first": first}, None),
        ("completion", {"current": f[3]}, None),
        ("contrastive", {"previous": f[4], "current": f[7], "first": first}, None),
        ("progress", {"current": f[5], "first": first}, 0.3),
        ("completion", {"current": f[9]}, None),
        ("progress", {"current": f[10], "first": first}, 0.6),
        ("contrastive", {"previous": f[10], "current": f[14]}, None),
        ("completion", {"current": f[14]}, None),
        ("progress", {"current": f[14], "first": first}, 0.8),
    ]
    return [
        RewardRequest(m, frames, task, env_id=i % 3, request_id=i, previous_value=prev)
        for i, (m, frames, prev) in enumerate(specs)
    ]


def config(paths: TinyModelPaths, **overrides) -> Qwen3VLBackendConfig:
    settings = dict(
        model=str(paths.base),
        adapters={m: str(paths.adapters[m]) for m in MODALITIES},
        max_new_tokens=10,
        max_new_tokens_direct=6,
        image_size=IMAGE_SIZE,
        max_batch_size=2,  # several batches per modality
        device="cpu",
    )
    settings.update(overrides)
    return Qwen3VLBackendConfig(**settings)


@pytest.fixture(scope="module")
def generator(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(config(tiny_qwen3vl, mode="generate"))


@pytest.fixture(scope="module")
def scorer(tiny_qwen3vl: TinyModelPaths) -> Qwen3VLRewardModel:
    return Qwen3VLRewardModel(config(tiny_qwen3vl, mode="logits"))


@pytest.fixture(scope="module", params=["generate", "logits"])
def model(request: pytest.FixtureRequest) -> Qwen3VLRewardModel:
    return request.getfixturevalue("generator" if request.param == "generate" else "scorer")


def by_modality_first(requests: list[RewardRequest]) -> list[int]:
    """A permutation that groups requests by modality but keeps their order within one.

    The backend batches per modality in request order, so this permutation feeds it
    exactly the same batches: any difference in the results is an ordering bug.
    """
    return sorted(range(len(requests)), key=lambda i: MODALITIES.index(requests[i].modality))


def same(a: Reward, b: Reward) -> bool:
    return (a.value, a.raw_text, a.probs, a.parsed_ok) == (b.value, b.raw_text, b.probs, b.parsed_ok)


# ---------------------------------------------------------------------------- the frames


def test_real_frames_from_the_env(episode: Episode) -> None:
    assert episode.task.strip()
    assert len(episode.frames) == STEPS
    for frame in [episode.first, *episode.frames]:
        assert frame.shape == (CAMERA, CAMERA, 3) and frame.dtype == np.uint8
        assert frame.std() > 5  # a rendered scene, not a blank frame
    # The random steps moved the arm: later frames differ from the first one.
    moved = [np.abs(f.astype(int) - episode.first.astype(int)).mean() for f in episode.frames]
    assert max(moved) > 2.0


# ---------------------------------------------------------------------------- both modes


def test_results_in_request_order_and_count(model: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    rewards = model.score(requests)
    assert len(rewards) == len(requests) and all(isinstance(r, Reward) for r in rewards)
    # Not vacuous: the results tell requests apart (different frames, or distinct progress fallbacks).
    assert len({(r.value, r.raw_text, str(r.probs)) for r in rewards}) > len(requests) // 2
    order = by_modality_first(requests)
    assert order != list(range(len(requests)))  # the permutation really reorders
    permuted = model.score([requests[i] for i in order])
    for position, i in enumerate(order):
        assert same(permuted[position], rewards[i]), f"request {i} got another request's result"
    assert model.score([]) == []


def test_values_in_range_per_modality(model: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    for request, reward in zip(requests, model.score(requests), strict=True):
        template = model.templates[request.modality]
        assert isinstance(reward.value, float) and np.isfinite(reward.value)
        assert isinstance(reward.raw_text, str)
        if model.config.mode == "logits" or reward.parsed_ok:
            low, high = (-1.0, 1.0) if request.modality == "contrastive" else (0.0, 1.0)
            assert low <= reward.value <= high, (request.modality, reward.value)
        if model.config.mode == "generate" and reward.parsed_ok:
            assert reward.value in {o.value for o in template.options}


def test_logits_probabilities_over_options_sum_to_one(scorer: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    rewards = scorer.score(requests)
    for request, reward in zip(requests, rewards, strict=True):
        template = scorer.templates[request.modality]
        assert reward.parsed_ok and reward.probs is not None
        assert list(reward.probs) == [o.name for o in template.options]
        assert sum(reward.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in reward.probs.values())
        expected = sum(p * o.value for p, o in zip(reward.probs.values(), template.options, strict=True))
        assert reward.value == pytest.approx(expected, abs=1e-6)
        assert len(reward.probs) == {"contrastive": 2, "progress": 11, "completion": 2}[request.modality]
    # Different real frames give different distributions (the images reach the model).
    completion = [r.probs["yes"] for q, r in zip(requests, rewards, strict=True) if q.modality == "completion"]
    assert len(set(np.round(completion, 8))) > 1


def test_logits_results_do_not_depend_on_batching(scorer: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    together = scorer.score(requests)
    alone = [scorer.score([r])[0] for r in reversed(requests)][::-1]
    for a, b in zip(together, alone, strict=True):
        assert a.raw_text == b.raw_text
        assert a.probs == pytest.approx(b.probs, abs=1e-4)


def test_greedy_generate_is_deterministic_on_real_frames(generator: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    first = generator.score(requests)
    second = generator.score(requests)
    assert [r.raw_text for r in first] == [r.raw_text for r in second]
    assert [r.value for r in first] == [r.value for r in second]
    assert [r.parsed_ok for r in first] == [r.parsed_ok for r in second]
    assert any(r.raw_text for r in first)  # the model did produce text
    assert all(r.probs is None for r in first)


def test_parse_failures_fall_back_and_are_counted(generator: Qwen3VLRewardModel, episode: Episode) -> None:
    requests = real_requests(episode)
    answers_before = dict(generator.stats.answers)
    failures_before = dict(generator.stats.failures)
    rewards = generator.score(requests)
    for request, reward in zip(requests, rewards, strict=True):
        parsed = parse_answer(reward.raw_text, generator.templates[request.modality])
        assert reward.parsed_ok == (parsed is not None)
        if reward.parsed_ok:
            assert reward.value == parsed
        else:
            # contrastive and completion fall back to 0; progress holds the env's previous value
            assert reward.value == fallback_value(request.modality, request.previous_value)
            if request.modality == "progress":
                assert reward.value == (request.previous_value or 0.0)
            else:
                assert reward.value == 0.0
    for modality in MODALITIES:
        sent = sum(r.modality == modality for r in requests)
        failed = sum(q.modality == modality and not r.parsed_ok for q, r in zip(requests, rewards, strict=True))
        assert generator.stats.answers.get(modality, 0) - answers_before.get(modality, 0) == sent
        assert generator.stats.failures.get(modality, 0) - failures_before.get(modality, 0) == failed
    # The random model writes gibberish on these frames, so the fallback path is exercised for real.
    assert any(not r.parsed_ok for r in rewards)


def test_env_frames_are_resized_per_config(
    model: Qwen3VLRewardModel, episode: Episode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames of the env's 64x64 size reach the processor at the configured (height, width)."""
    seen: list[dict] = []
    processor = model.processor

    class Spy:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, *args, **kwargs):
            out = processor(*args, **kwargs)
            seen.append({"shapes": [im.shape for im in kwargs["images"]], "grid": out["image_grid_thw"].tolist()})
            return out

    monkeypatch.setattr(model, "processor", Spy())
    requests = real_requests(episode)
    n_images = sum(len(r.frames) for r in requests)
    originals = [{k: v.copy() for k, v in r.frames.items()} for r in requests]

    model.score(requests)
    shapes = [s for call in seen for s in call["shapes"]]
    grids = [g for call in seen for g in call["grid"]]
    assert len(shapes) == n_images
    assert set(shapes) == {(*IMAGE_SIZE, 3)}
    patch = 16  # tiny processor: 16-pixel patches, so a (32, 64) frame is a 1x2x4 patch grid
    assert grids == [[1, IMAGE_SIZE[0] // patch, IMAGE_SIZE[1] // patch]] * n_images
    for request, before in zip(requests, originals, strict=True):  # the caller's frames are untouched
        assert all(np.array_equal(request.frames[k], before[k]) for k in before)

    # With no image size configured the env's frames go in as they are.
    seen.clear()
    monkeypatch.setattr(model.config, "image_size", None)
    model.score(requests[:3])
    assert {s for call in seen for s in call["shapes"]} == {(CAMERA, CAMERA, 3)}
    assert {tuple(g) for call in seen for g in call["grid"]} == {(1, CAMERA // patch, CAMERA // patch)}
