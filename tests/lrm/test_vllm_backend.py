"""The `vllm` backend against a fake vLLM server on 127.0.0.1 (tests/support/fake_vllm.py).

Scripted answers check the requests it builds and the arithmetic of reading them;
the fake run on the tiny random Qwen3-VL, as vLLM runs a model, shows that logits
mode gives the in-process `qwen3vl` backend's probabilities; the real server is a
GPU check.
"""

from __future__ import annotations

import base64
import io
import json
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.http_client import ServerError
from lrm.backends.prompts import PROMPTS_DIR, load_prompt
from lrm.backends.qwen3vl import Qwen3VLBackendConfig, Qwen3VLRewardModel
from lrm.backends.vllm import VLLMBackendConfig, VLLMRewardModel, saved_modules
from lrm.backends.vllm_protocol import option_logprob_sums, prompt_token_logprobs
from lrm.guarded import GuardedRewardModel
from lrm.types import RequestError, RewardRequest
from tests.support.fake_vllm import BASE, FakeVLLM, TinyEngine
from tests.support.tiny_reward_models import TinyModelPaths, build_tiny_vision_adapter

PUBLISHED = PROMPTS_DIR / "published"
MODALITIES = ("contrastive", "progress", "completion")


@pytest.fixture()
def fake():
    server = FakeVLLM()
    yield server
    server.close()


def frames(*names: str, side: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(names))
    return {n: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for n in names}


def model(fake: FakeVLLM, **settings) -> VLLMRewardModel:
    return VLLMRewardModel(VLLMBackendConfig(**{"url": fake.url, "urls": {}, "backoff_s": 0.01, **settings}))


class ByAnswer:
    """A scripted server that answers each option call from the assistant text it continues (calls run concurrently)."""

    def __init__(self, answers: dict[str, dict], generated: str = "") -> None:
        self.answers, self.generated = answers, generated

    def answer(self, body: dict) -> dict:
        if not body.get("continue_final_message"):
            return {"text": self.generated}
        return self.answers[body["messages"][-1]["content"]]


def path(tokens: list[int], logprobs: list[float], ranks: list[int] | None = None, top1: bool = False) -> dict:
    """`prompt_logprobs` as vLLM writes them: the prompt token first, at its rank; with `top1` the top one too."""
    ranks = ranks or [1] * len(tokens)
    positions: list = [None]
    for token, logprob, rank in zip(tokens[1:], logprobs[1:], ranks[1:], strict=True):
        entry = {str(token): {"logprob": logprob, "rank": rank, "decoded_token": "x"}}
        if top1 and rank != 1:
            entry["999"] = {"logprob": -0.01, "rank": 1, "decoded_token": "y"}
        positions.append(entry)
    return {"prompt_logprobs": positions}


# ---------------------------------------------------------------- requests and generate mode

def test_the_factory_builds_it_and_it_answers_every_modality(fake: FakeVLLM) -> None:
    config = RewardBackendConfig(type="vllm", vllm=VLLMBackendConfig(url=fake.url, urls={}))
    assert isinstance(make_reward_backend(config), VLLMRewardModel)
    assert config.modalities == MODALITIES and config.trace_name("progress") == "progress"


def test_generate_sends_the_published_prompt_with_the_modalitys_lora(fake: FakeVLLM) -> None:
    fake.replies = [{"text": 'The cube is lifted.\n{ "completion_progress": 0.7 }'}]
    shown = frames("current", "first")
    reward = model(fake).score([RewardRequest("progress", shown, "pick up the cube")])[0]
    assert reward.value == pytest.approx(0.7) and reward.parsed_ok
    body = fake.bodies[0]
    assert body["model"] == "progress" and body["max_tokens"] == 128 and body["temperature"] == 0.0
    template = load_prompt(PUBLISHED / "progress.yaml")
    expected, _ = template.chat("pick up the cube", shown)
    parts = body["messages"][0]["content"]
    assert [p.get("text") for p in parts] == [p.get("text") for p in expected[0]["content"]]  # the exact texts
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    decoded = [np.array(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))) for u in urls]
    np.testing.assert_array_equal(decoded[0], shown["first"])  # the reset frame first, as the adapter was trained
    np.testing.assert_array_equal(decoded[1], shown["current"])
    assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"  # no system message


def test_an_unreadable_answer_takes_the_reference_fallback(fake: FakeVLLM) -> None:
    fake.replies = [{"text": "I cannot tell."}]
    reward = model(fake).score([RewardRequest("completion", frames("current"), "t", previous_value=0.4)])[0]
    assert not reward.parsed_ok and 0.0 <= reward.value <= 1.0


# ---------------------------------------------------------------- logits mode: exact option probabilities

def test_logits_scores_each_whole_answer_from_its_prompt_logprobs(fake: FakeVLLM) -> None:
    """"no" ranks 600th where it parts from "yes": outside any top-k, it still gets its exact probability."""
    template = load_prompt(PUBLISHED / "completion.yaml")
    yes, no = (template.answer_text(o) for o in template.options)
    shared = [7, 8, 9]  # the prompt and the answer's opening, alike for both options
    fake.engine = ByAnswer({
        yes: path(shared + [40, 41, 42], [0.0, -0.1, -0.2, -0.05, -0.3, -0.01], [1, 1, 1, 1, 1, 1]),
        no: path(shared + [50, 42], [0.0, -0.1, -0.2, -7.5, -0.02], [1, 1, 1, 600, 1], top1=True),
    })
    reward = model(fake, mode="logits").score([RewardRequest("completion", frames("current"), "t")])[0]
    p_yes = 1 / (1 + math.exp((-7.5 - 0.02) - (-0.05 - 0.3 - 0.01)))
    assert reward.probs == pytest.approx({"yes": p_yes, "no": 1 - p_yes}, abs=1e-12)
    assert reward.value == pytest.approx(p_yes, abs=1e-12) and reward.raw_text == template.answer_prefix
    by_answer = {b["messages"][-1]["content"]: b for b in fake.bodies}
    assert set(by_answer) == {yes, no}  # one call per option, the whole answer as the assistant's start
    for body in by_answer.values():
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["prompt_logprobs"] == 1 and body["return_token_ids"] is True and body["max_tokens"] == 1
        assert "logprobs" not in body and "top_logprobs" not in body


def test_logits_after_reasoning_scores_the_answers_after_it(fake: FakeVLLM) -> None:
    template = load_prompt(PUBLISHED / "progress.yaml")
    context = "The gripper holds it.\n"
    answers = [context + template.answer_text(o) for o in template.options]
    scores = np.linspace(-3.0, 0.0, len(answers))  # each option's own answer tokens, one token apart from the rest
    fake.engine = ByAnswer({a: path([1, 2, 3, 100 + k], [0.0, -0.5, -0.5, s]) for k, (a, s) in enumerate(
        zip(answers, scores))}, generated=context + '{ "completion_progress": 0.7 }')
    reward = model(fake, mode="logits").score([RewardRequest("progress", frames("current", "first"), "t")])[0]
    want = np.exp(scores) / np.exp(scores).sum()
    assert list(reward.probs.values()) == pytest.approx(list(want), abs=1e-12)
    assert reward.value == pytest.approx(float(np.dot(want, np.linspace(0, 1, 11))), abs=1e-12)
    assert reward.raw_text == context + template.answer_prefix
    assert "continue_final_message" not in fake.bodies[0] and fake.bodies[0]["max_tokens"] == 128  # the reasoning
    assert sorted(b["messages"][-1]["content"] for b in fake.bodies[1:]) == sorted(answers)


def test_the_prompt_token_is_read_by_id_or_by_rank() -> None:
    answer = path([1, 2, 3], [0.0, -0.4, -2.0], [1, 1, 37], top1=True)
    assert prompt_token_logprobs(answer) == [(2, -0.4), (3, -2.0)]  # by rank: 3 next to the top-1 token 999
    answer["prompt_token_ids"] = [1, 2, 3]
    assert prompt_token_logprobs(answer) == [(2, -0.4), (3, -2.0)]
    answer["prompt_token_ids"] = [1, 2, 4]
    with pytest.raises(ValueError, match=r"prompt_logprobs\[2\] lacks the prompt token 4"):
        prompt_token_logprobs(answer)


def test_unusable_answers_fail_in_one_line(fake: FakeVLLM) -> None:
    template = load_prompt(PUBLISHED / "completion.yaml")
    yes, no = (template.answer_text(o) for o in template.options)
    fake.engine = ByAnswer({yes: {"prompt_logprobs": None}, no: {"prompt_logprobs": None}})
    with pytest.raises(ValueError, match=r"^vllm: completion option \d: the answer has no prompt_logprobs [^\n]*$"):
        model(fake, mode="logits").score([RewardRequest("completion", frames("current"), "t")])
    with pytest.raises(ValueError, match="the same tokens"):
        option_logprob_sums([[(1, 0.0), (2, -1.0)], [(1, 0.0), (2, -1.0)]])


def test_server_errors_read_as_vllm_writes_them(fake: FakeVLLM) -> None:
    backend = model(fake)
    fake.served = (BASE, "contrastive", "completion")  # the LoRA was unloaded while the backend ran
    with pytest.raises(RequestError, match="The model `progress` does not exist"):
        backend.score([RewardRequest("progress", frames("current", "first"), "t")])


def test_an_unavailable_server_is_retried_then_held(fake: FakeVLLM) -> None:
    backend = model(fake, retries=2)
    fake.unavailable = 2
    fake.replies = [{"text": '{ "task_completed": "yes" }'}]
    assert backend.score([RewardRequest("completion", frames("current"), "t")])[0].value == 1.0
    assert backend.client.failed_attempts == 2
    fake.unavailable = 3
    with pytest.raises(ServerError, match="503"):
        backend.score([RewardRequest("completion", frames("current"), "t")])
    guard = GuardedRewardModel(backend)
    fake.unavailable = 6
    held = guard.score([RewardRequest("completion", frames("current"), "t", env_id=3, previous_value=1.0)])[0]
    assert held.failed and held.value == 1.0 and guard.failures[3] == 1


# ---------------------------------------------------------------- the start check

def adapter_dir(tmp_path: pathlib.Path, modules: list[str] | None, name: str = "progress_adapter") -> pathlib.Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 64, "peft_type": "LORA", "modules_to_save": modules}))
    return folder


def test_the_start_check_names_what_is_not_served(fake: FakeVLLM) -> None:
    with pytest.raises(ValueError, match=r"^vllm: .* does not serve 'lrm-progress' for progress \(it serves \["):
        model(fake, loras={"progress": "lrm-progress"})
    with pytest.raises(ValueError, match=r"^vllm: http://127.0.0.1:1/v1 failed after 1 attempts"):
        VLLMRewardModel(VLLMBackendConfig(url="http://127.0.0.1:1/v1", urls={}, retries=0))


def test_a_lora_with_its_own_vision_tower_is_refused(fake: FakeVLLM, tmp_path: pathlib.Path) -> None:
    folder = adapter_dir(tmp_path, ["visual", "merger"])
    assert saved_modules(folder) == ["visual", "merger"] and saved_modules(tmp_path) == []
    fake.roots = {"progress": str(folder)}  # the folder vLLM reports for the LoRA, readable here
    with pytest.raises(ValueError, match=r"^vllm: progress is served as the LoRA 'progress', but its adapter "
                                         r"\(.*\) keeps its own \['visual', 'merger'\] \(modules_to_save\)[^\n]*$"):
        model(fake)
    fake.served = (BASE, "contrastive", "completion")
    with pytest.raises(ValueError, match=r"does not serve 'progress' .*; its adapter .*\(lrm\.backends\.merged\)"):
        model(fake, adapter_dirs={"progress": str(folder)})
    fake.roots = {"progress": str(adapter_dir(tmp_path, None, "language_only"))}
    fake.served = (BASE, "contrastive", "progress", "completion")
    assert model(fake).served["progress"]["id"] == "progress"  # a language-only LoRA passes


def test_progress_served_merged_on_its_own_server(fake: FakeVLLM, tmp_path: pathlib.Path) -> None:
    merged = FakeVLLM(served=("progress",))  # `vllm serve MERGED --served-model-name progress`: a model, no parent
    try:
        backend = model(fake, urls={"progress": merged.url}, adapter_dirs={"progress": str(
            adapter_dir(tmp_path, ["visual", "merger"]))})
        merged.replies = [{"text": '{ "completion_progress": 0.3 }'}]
        fake.replies = [{"text": '{ "task_completed": "no" }'}]
        rewards = backend.score([RewardRequest("progress", frames("current", "first"), "t"),
                                 RewardRequest("completion", frames("current"), "t")])
        assert [r.value for r in rewards] == pytest.approx([0.3, 0.0])
        assert [b["model"] for b in merged.bodies] == ["progress"]
        assert [b["model"] for b in fake.bodies] == ["completion"]
    finally:
        merged.close()


# ---------------------------------------------------------------- against the in-process backend, tiny Qwen3-VL

def qwen3vl(paths: TinyModelPaths, **overrides) -> Qwen3VLRewardModel:
    settings = dict(model=str(paths.base), adapters={m: str(paths.adapters[m]) for m in MODALITIES},
                    prompts={m: str(PUBLISHED / f"{m}.yaml") for m in MODALITIES}, mode="logits",
                    max_new_tokens_by_modality={m: 6 for m in MODALITIES}, max_batch_size=1)
    return Qwen3VLRewardModel(Qwen3VLBackendConfig(**{**settings, **overrides}))


def tiny_requests() -> list[RewardRequest]:
    return [RewardRequest("completion", frames("current", side=64), "pick up the red cube"),
            RewardRequest("progress", frames("current", "first", side=64), "pick up the red cube"),
            RewardRequest("contrastive", frames("current", "previous", "first", side=64), "stack the cube")]


def test_logits_equal_the_qwen3vl_backends(tiny_qwen3vl: TinyModelPaths) -> None:
    reference = qwen3vl(tiny_qwen3vl)
    server = FakeVLLM(engine=TinyEngine(reference))
    try:
        backend = VLLMRewardModel(VLLMBackendConfig(url=server.url, urls={}, mode="logits",
                                                    max_new_tokens_by_modality={m: 6 for m in MODALITIES}))
        got = backend.score(tiny_requests())
    finally:
        server.close()
    want = reference.score(tiny_requests())
    for g, w in zip(got, want, strict=True):
        assert g.raw_text == w.raw_text
        assert g.probs == pytest.approx(w.probs, abs=1e-5) and g.value == pytest.approx(w.value, abs=1e-5)
    assert len(got[1].probs) == 11 and min(got[1].probs.values()) > 0  # every progress value, none left at zero


def test_progress_merged_scores_as_the_adapter_does(tiny_qwen3vl: TinyModelPaths, tmp_path: pathlib.Path) -> None:
    """The workaround for the vision weights: the adapter merged, served as a plain model, scores as the adapter."""
    from lrm.backends.merged import merge_adapter

    vision = build_tiny_vision_adapter(tiny_qwen3vl.base, tmp_path / "vision_adapter")
    merged = merge_adapter(str(tiny_qwen3vl.base), str(vision), tmp_path / "merged")
    prompt = tmp_path / "progress.yaml"  # the published prompt, answered at once (no random reasoning to match)
    prompt.write_text((PUBLISHED / "progress.yaml").read_text().replace("reasoning: true", "reasoning: false"))
    prompts = {"progress": str(prompt)}
    with_adapter = qwen3vl(tiny_qwen3vl, adapters={"progress": str(vision)}, prompts=prompts)
    plain = qwen3vl(tiny_qwen3vl, model=str(merged), adapters={}, prompts=prompts)
    request = [tiny_requests()[1]]
    want = with_adapter.score(request)[0].probs
    assert plain.score(request)[0].probs == pytest.approx(want, abs=1e-5)
    server = FakeVLLM(engine=TinyEngine(plain), served=("progress",))
    try:
        backend = VLLMRewardModel(VLLMBackendConfig(url=server.url, urls={}, model="progress", loras={},
                                                    mode="logits", prompts=prompts))
        assert backend.score(request)[0].probs == pytest.approx(want, abs=1e-5)
    finally:
        server.close()
