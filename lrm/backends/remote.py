"""The `remote` backend: a reward model served by `lrm-robot serve` on another machine (lrm.serving).

A robot's control PC without a GPU, or many simulation workers, score through
one served model: this backend sends the requests in the wire format
(lrm.serving.wire: frames as raw bytes or PNG, never pickles) and reads the
Rewards back. It is a RewardModel like any other, so every command that takes a
backend YAML takes `type: remote` too.

Each call has a timeout and is retried with back-off (lrm.backends.http_client);
a call that still fails raises, and the caller's failure rule applies exactly as
for a local backend that raised (lrm.guarded: the env's value is held and the
failure counted; the loop goes on). A call the server refuses (4xx) raises
RequestError with the server's reason.

At start the backend asks the server's /health which backend it serves; a
server that serves another type than `serves` says is refused in one line, so a
run's traces and modalities are those of the model that really scores them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from lrm.backends.http_client import RetryingClient, ServerError
from lrm.types import Reward, RewardRequest, validate_request

__all__ = ["RemoteBackendConfig", "RemoteRewardModel"]


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
        self.config = config
        self.client = RetryingClient.for_backend(config, "remote")
        try:
            self.health = self.client.call("GET", "health")
        except ServerError as exc:  # at start an unreachable server is a setting to fix, not a hiccup
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
            answer = self.client.call("POST", "score", encode_requests(chunk, self.config.frame_encoding))
            rewards.extend(decode_rewards(answer, len(chunk)))
        return rewards

    @property
    def failed_attempts(self) -> int:
        """Calls retried so far (a timeout, a refused connection, a 5xx answer)."""
        return self.client.failed_attempts

    @property
    def failed_calls(self) -> int:
        """Calls that failed after every retry (each one raised to the caller)."""
        return self.client.failed_calls

    def close(self) -> None:
        self.client.close()

