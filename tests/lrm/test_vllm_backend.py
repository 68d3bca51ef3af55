"""The `vllm` backend against a fake vLLM server on 127.0.0.1: the requests it builds and how it reads answers.

The fake answers as vLLM's OpenAI-compatible server does: its error objects, its
limits (`--max-logprobs 20`, at most three images per prompt, known model names
only) and a scripted reply per call; the real server is a GPU check.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.http_client import ServerError
from lrm.backends.prompts import PROMPTS_DIR, load_prompt
from lrm.backends.vllm import VLLMBackendConfig, VLLMRewardModel, option_probs_from_logprobs
from lrm.guarded import GuardedRewardModel
from lrm.types import RequestError, RewardRequest

SERVED = {"Qwen/Qwen3-VL-8B-Instruct", "contrastive", "progress", "completion"}


class FakeVLLM:
    """vLLM's /v1/chat/completions: checks what vLLM checks, records bodies, answers from `replies`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.replies: list[dict] = []
        self.unavailable = 0  # answer this many calls with 503 first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.bodies.append(body)
                status, answer = fake.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def error(status: int, kind: str, message: str) -> tuple[int, dict]:
        return status, {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def answer(self, body: dict) -> tuple[int, dict]:
        if self.unavailable:
            self.unavailable -= 1
            return self.error(503, "ServiceUnavailableError", "engine is restarting")
        if body["model"] not in SERVED:
            return self.error(404, "NotFoundError", f"The model `{body['model']}` does not exist.")
        if body.get("top_logprobs", 0) > 20:
            return self.error(400, "BadRequestError", "Requested top logprobs of 21 exceeds max allowed (20).")
        images = sum(p["type"] == "image_url" for m in body["messages"] for p in m["content"]
                     if isinstance(m["content"], list))
        if images > 3:
            return self.error(400, "BadRequestError", "At most 3 image(s) may be provided in one prompt.")
        reply = self.replies.pop(0)
        message = {"role": "assistant", "content": reply.get("text", "")}
        choice = {"index": 0, "message": message, "finish_reason": "stop",
                  "logprobs": {"content": reply["logprobs"]} if "logprobs" in reply else None}
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": [choice],
                     "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}}


@pytest.fixture()
def fake():
    server = FakeVLLM()
    yield server
    server.server.shutdown()


def frames(*names: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for n in names}


def token(text: str, logprob: float, alternatives: dict[str, float] | None = None) -> dict:
    tops = [{"token": text, "logprob": logprob}] + [{"token": t, "logprob": lp} for t, lp in (alternatives or {}).items()]
    return {"token": text, "logprob": logprob, "bytes": list(text.encode()), "top_logprobs": tops}


def model(fake: FakeVLLM, **settings) -> VLLMRewardModel:
    return VLLMRewardModel(VLLMBackendConfig(url=fake.url, backoff_s=0.01, **settings))


def test_the_factory_builds_it_and_it_answers_every_modality() -> None:
    config = RewardBackendConfig(type="vllm")
    assert isinstance(make_reward_backend(config), VLLMRewardModel)
    assert config.modalities == ("contrastive", "progress", "completion") and config.trace_name("progress") == "progress"


def test_generate_sends_the_published_prompt_with_the_modalitys_lora(fake: FakeVLLM) -> None:
    fake.replies = [{"text": 'The cube is lifted.\n{ "completion_progress": 0.7 }'}]
    shown = frames("current", "first")
    reward = model(fake).score([RewardRequest("progress", shown, "pick up the cube")])[0]
    assert reward.value == pytest.approx(0.7) and reward.parsed_ok
    body = fake.bodies[0]
    assert body["model"] == "progress" and body["max_tokens"] == 128 and body["temperature"] == 0.0
    template = load_prompt(PROMPTS_DIR / "published" / "progress.yaml")
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


def test_logits_reads_the_answer_token_logprobs(fake: FakeVLLM) -> None:
    fake.replies = [{"text": ' "yes" }', "logprobs": [token(' "', -0.01), token("yes", -0.2, {"no": -1.8}),
                                                      token('"', 0.0), token(" }", 0.0)]}]
    reward = model(fake, mode="logits").score([RewardRequest("completion", frames("current"), "t")])[0]
    p_yes = math.exp(-0.2) / (math.exp(-0.2) + math.exp(-1.8))
    assert reward.probs == pytest.approx({"yes": p_yes, "no": 1 - p_yes}) and reward.value == pytest.approx(p_yes)
    body = fake.bodies[0]
    assert body["messages"][-1] == {"role": "assistant", "content": '{ "task_completed":'}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["logprobs"] is True and body["top_logprobs"] == 20


def test_logits_after_reasoning_continues_the_reasoning(fake: FakeVLLM) -> None:
    fake.replies = [
        {"text": 'The gripper holds it.\n{ "completion_progress": 0.7 }'},
        {"text": " 0.7 }", "logprobs": [token(" 0", -0.1, {" 1": -2.5}), token(".", 0.0),
                                        token("7", -0.5, {"6": -1.5, "8": -2.0}), token(" }", 0.0)]},
    ]
    reward = model(fake, mode="logits").score([RewardRequest("progress", frames("current", "first"), "t")])[0]
    raw = {"1.0": math.exp(-2.5), "0.7": math.exp(-0.6), "0.6": math.exp(-1.6), "0.8": math.exp(-2.1)}
    total = sum(raw.values())
    assert {k: v for k, v in reward.probs.items() if v > 0} == pytest.approx({k: v / total for k, v in raw.items()})
    assert fake.bodies[1]["messages"][-1]["content"] == 'The gripper holds it.\n{ "completion_progress":'


def test_option_probs_need_an_option_among_the_alternatives() -> None:
    template = load_prompt(PROMPTS_DIR / "published" / "completion.yaml")
    with pytest.raises(ValueError, match="no answer option"):
        option_probs_from_logprobs(template, " ", [token("maybe", -0.1, {"perhaps": -2.0})])


def test_server_errors_read_as_vllm_writes_them(fake: FakeVLLM) -> None:
    with pytest.raises(RequestError, match="The model `lrm-progress` does not exist"):
        model(fake, loras={"progress": "lrm-progress"}).score([RewardRequest("progress", frames("current", "first"), "t")])
    with pytest.raises(RequestError, match=r"exceeds max allowed \(20\)"):
        model(fake, mode="logits", top_logprobs=21).score([RewardRequest("completion", frames("current"), "t")])


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
