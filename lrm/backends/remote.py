"""The `remote` backend: a reward model served by `lrm-robot serve` on another machine (lrm.serving).

A robot's control PC without a GPU, or many simulation workers, score through
one served model: this backend sends the requests in the wire format
(lrm.serving.wire: frames as raw bytes or PNG, never pickles) and reads the
Rewards back. It is a RewardModel like any other, so every command that takes a
backend YAML takes `type: remote` too.

A network fails in ways a local model does not, so each call has a timeout, and
a call that times out, cannot connect or gets a 5xx answer (a replica that died,
a server restarting) is retried `retries` times with exponential back-off. A
call that still fails raises RemoteBackendError, and the caller's failure rule
applies exactly as for a local backend that raised (lrm.guarded: the env's
value is held and the failure counted; the loop goes on). A 4xx answer is the
request's fault and is not retried: it raises RequestError with the server's reason.

At start the backend asks the server's /health which backend it serves; a
server that serves another type than `serves` says is refused in one line, so a
run's traces and modalities are those of the model that really scores them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from lrm.types import RequestError, Reward, RewardRequest, validate_request

log = logging.getLogger(__name__)

__all__ = ["RemoteBackendConfig", "RemoteBackendError", "RemoteRewardModel"]


class RemoteBackendError(RuntimeError):
    """The reward server did not answer a call after every retry; one line naming the URL."""


@dataclasses.dataclass
class RemoteBackendConfig:
    """Where the served backend is and how patiently to ask it (module doc).

    `url` is the server's address with its route prefix (http://gpu-box:8000/).
    `serves` is the backend type it hosts (checked against its /health; it gives the
    modalities and trace names). `timeout_s` bounds one call, `connect_timeout_s`
    the connection; a failed call is retried `retries` times after
    `backoff_s`, doubling up to `backoff_max_s`. Frames travel as `raw` bytes
    (fast on a LAN) or `png` (smaller on a slow link); at most
    `max_requests_per_call` requests go in one call.
    """

    url: str = ""
    serves: str = "qwen3vl"
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    frame_encoding: Literal["raw", "png"] = "raw"
    max_requests_per_call: int = 64

    def __post_init__(self) -> None:
        if self.retries < 0 or self.max_requests_per_call < 1:
            raise ValueError("remote: retries must be >= 0 and max_requests_per_call >= 1")
        if min(self.timeout_s, self.connect_timeout_s) <= 0 or min(self.backoff_s, self.backoff_max_s) < 0:
            raise ValueError("remote: timeouts must be > 0 and back-off times >= 0")


class RemoteRewardModel:
    """Scores RewardRequests on a reward server (module doc)."""

    def __init__(self, config: RemoteBackendConfig) -> None:
        import httpx

        if not config.url.startswith(("http://", "https://")):
            raise ValueError(f"remote: url must start with http:// or https://, got {config.url!r}")
        self.config = config
        self._httpx = httpx
        base = config.url.rstrip("/") + "/"
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(config.timeout_s,
                                                                         connect=config.connect_timeout_s))
        self.failed_attempts = 0  # calls that were retried (timeouts, refused connections, 5xx)
        self.failed_calls = 0  # calls that failed after every retry
        try:
            self.health = self._call("GET", "health")
        except RemoteBackendError as exc:  # at start an unreachable server is a setting to fix, not a hiccup
            raise ValueError(f"remote: {exc}") from None
        if self.health.get("backend") != config.serves:
            raise ValueError(f"remote: {config.url} serves the {self.health.get('backend')!r} backend, "
                             f"the config says serves: {config.serves!r}")
        self.needs_video = bool(self.health.get("needs_video", False))

    def score(self, requests: Sequence[RewardRequest]) -> list[Reward]:
        from lrm.serving.wire import decode_rewards, encode_requests

        for i, request in enumerate(requests):  # a bad request is the caller's bug: say so here, not after a trip
            validate_request(request, i)
        rewards: list[Reward] = []
        step = self.config.max_requests_per_call
        for start in range(0, len(requests), step):
            chunk = requests[start : start + step]
            answer = self._call("POST", "score", encode_requests(chunk, self.config.frame_encoding))
            rewards.extend(decode_rewards(answer, len(chunk)))
        return rewards

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, route: str, body: bytes | None = None) -> dict[str, Any]:
        """One HTTP call with the retry rule of the module doc; the answer's JSON."""
        httpx = self._httpx
        error = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                self.failed_attempts += 1
                delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1))
                log.warning("reward server %s: %s; retry %d/%d in %.1fs", self.config.url, error, attempt,
                            self.config.retries, delay)
                time.sleep(delay)
            try:
                response = self._client.request(method, route, content=body,
                                                 headers={"content-type": "application/json"} if body else None)
            except httpx.TransportError as exc:  # timeouts, refused or reset connections
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    error = f"answer is not JSON ({response.status_code})"
                    continue
            reason = _reason(response)
            if response.status_code < 500:  # the request's fault: the same call would fail again
                raise RequestError(f"reward server refused the call ({response.status_code}): {reason}")
            error = f"{response.status_code}: {reason}"
        self.failed_calls += 1
        raise RemoteBackendError(f"reward server {self.config.url} failed after {self.config.retries + 1} "
                                 f"attempts: {error}")


def _reason(response: Any) -> str:
    try:
        return str(response.json().get("error", response.text))[:300]
    except ValueError:
        return response.text.strip().splitlines()[0][:300] if response.text.strip() else "no reason given"
