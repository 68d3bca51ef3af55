"""A fake of vLLM's OpenAI-compatible server on 127.0.0.1, as far as the `vllm` backend uses it.

`GET /v1/models` lists the served names as vLLM does (a LoRA's card has the base
as `parent` and its folder as `root`); `POST /v1/chat/completions` checks what
vLLM checks (served model, `--max-logprobs 20`, three images per prompt,
`continue_final_message` with `add_generation_prompt`) and answers either from
scripted `replies` or, given a `TinyEngine`, by running the tiny Qwen3-VL the way
vLLM runs a model: the chat rendered by the chat template (with
`continue_final_message`), the whole text tokenised with the images by the
processor, greedy generation, and `prompt_logprobs` in vLLM's shape (None at the
first position, then token id -> {logprob, rank, decoded_token} with the prompt
token first, at its true rank, and the top k after it).
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

BASE = "Qwen/Qwen3-VL-8B-Instruct"
SERVED = (BASE, "contrastive", "progress", "completion")


class TinyEngine:
    """Answers chat bodies with the model of an in-process `Qwen3VLRewardModel` (its weights, processor, adapters)."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.lock = threading.Lock()  # one forward at a time: adapters are switched on the shared model

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch
        from PIL import Image

        messages, images = [], []
        for message in body["messages"]:
            content = message["content"]
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part["type"] == "image_url":
                        data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                        images.append(np.array(Image.open(io.BytesIO(data)).convert("RGB")))
                        parts.append({"type": "image"})
                    else:
                        parts.append(part)
                content = parts
            messages.append({"role": message["role"], "content": content})
        processor = self.scorer.processor
        text = processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=body.get("add_generation_prompt", True),
            continue_final_message=body.get("continue_final_message", False))
        inputs = processor(text=[text], images=images or None, return_tensors="pt")
        modality = body["model"] if body["model"] in self.scorer.config.adapters else "bare"
        with self.lock, torch.inference_mode(), self.scorer._adapter(modality):
            logits = self.scorer.model(**inputs).logits[0].float().log_softmax(-1)
            generated = self.scorer._generate(inputs, body["max_tokens"])[0]
        ids = inputs["input_ids"][0].tolist()
        answer: dict[str, Any] = {"text": generated}
        if body.get("prompt_logprobs") is not None:
            answer["prompt_logprobs"] = [None] + [
                self._position(logits[t - 1], ids[t], body["prompt_logprobs"]) for t in range(1, len(ids))]
        if body.get("return_token_ids"):
            answer["prompt_token_ids"] = ids
        return answer

    def _position(self, row: Any, token: int, k: int) -> dict[str, dict[str, Any]]:
        decode = self.scorer.tokenizer.decode
        logprob = float(row[token])
        rank = int((row >= row[token]).sum())  # vLLM's rank: how many tokens are at least as likely
        entries = {str(token): {"logprob": logprob, "rank": rank, "decoded_token": decode([token])}}
        values, indices = row.topk(k) if k > 0 else (row[:0], row[:0].long())
        for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
            entries[str(index)] = {"logprob": value, "rank": rank, "decoded_token": decode([index])}
        return entries


class FakeVLLM:
    """vLLM's /v1/models and /v1/chat/completions on a free port (module doc); records every body."""

    def __init__(self, engine: TinyEngine | None = None, served: tuple[str, ...] = SERVED,
                 roots: dict[str, str] | None = None) -> None:
        self.engine, self.served, self.roots = engine, served, roots or {}
        self.bodies: list[dict] = []
        self.replies: list[dict] = []
        self.unavailable = 0  # answer this many calls with 503 first
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/v1/models"):
                    self._send(*fake.models())
                else:
                    self._send(*fake.error(404, "NotFoundError", "Not Found"))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.bodies.append(body)
                self._send(*fake.answer(body))

            def _send(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def error(status: int, kind: str, message: str) -> tuple[int, dict]:
        return status, {"error": {"message": message, "type": kind, "param": None, "code": status}}

    def models(self) -> tuple[int, dict]:
        base = self.served[0]
        cards = [{"id": name, "object": "model", "owned_by": "vllm", "root": self.roots.get(name, name),
                  "parent": None if name == base else base} for name in self.served]
        return 200, {"object": "list", "data": cards}

    def answer(self, body: dict) -> tuple[int, dict]:
        if self.unavailable:
            self.unavailable -= 1
            return self.error(503, "ServiceUnavailableError", "engine is restarting")
        if body["model"] not in self.served:
            return self.error(404, "NotFoundError", f"The model `{body['model']}` does not exist.")
        if body.get("continue_final_message") and body.get("add_generation_prompt", True):
            return self.error(400, "BadRequestError",
                              "Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
        for field in ("top_logprobs", "prompt_logprobs"):
            if (body.get(field) or 0) > 20:
                return self.error(400, "BadRequestError",
                                  f"Requested {field} of {body[field]} exceeds max allowed (20).")
        images = sum(p["type"] == "image_url" for m in body["messages"] for p in m["content"]
                     if isinstance(m["content"], list))
        if images > 3:
            return self.error(400, "BadRequestError", "At most 3 image(s) may be provided in one prompt.")
        reply = self.engine.answer(body) if self.engine is not None else self.replies.pop(0)
        message = {"role": "assistant", "content": reply.get("text", "")}
        choice = {"index": 0, "message": message, "finish_reason": "stop",
                  "logprobs": {"content": reply["logprobs"]} if "logprobs" in reply else None}
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": [choice],
                     "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
                     "prompt_logprobs": reply.get("prompt_logprobs"),
                     "prompt_token_ids": reply.get("prompt_token_ids")}
