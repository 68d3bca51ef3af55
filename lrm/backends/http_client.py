"""JSON over HTTP with a timeout and retries with back-off: what the `remote` and `vllm` backends share.

A network fails in ways a local model does not. A call that times out, cannot
connect or gets a 5xx answer (a replica that died, a server restarting) is
retried `retries` times, waiting `backoff_s`, doubling up to `backoff_max_s`;
a call that still fails raises `ServerError` naming the URL, and the caller's
failure rule applies as for a local backend that raised (lrm.guarded: the env's
value is held and counted). A 4xx answer is the request's fault and would fail
again: it raises `RequestError` with the server's one-line reason at once.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from lrm.types import RequestError

log = logging.getLogger(__name__)

__all__ = ["RetryingClient", "ServerError"]


class ServerError(RuntimeError):
    """The server did not answer a call after every retry; one line naming the URL."""


class RetryingClient:
    """One server's JSON calls under the retry rule of the module doc; counts what failed."""

    def __init__(self, url: str, *, timeout_s: float, connect_timeout_s: float, retries: int, backoff_s: float,
                 backoff_max_s: float) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s
        self._httpx = httpx
        self._client = httpx.Client(base_url=url.rstrip("/") + "/",
                                    timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))
        self.failed_attempts = 0  # attempts that were retried (timeouts, refused connections, 5xx)
        self.failed_calls = 0  # calls that failed after every retry

    @classmethod
    def for_backend(cls, config: Any, name: str) -> RetryingClient:
        """The client a backend section describes (url, timeouts, retries, back-off); a bad url names `name`."""
        try:
            return cls(config.url, timeout_s=config.timeout_s, connect_timeout_s=config.connect_timeout_s,
                       retries=config.retries, backoff_s=config.backoff_s, backoff_max_s=config.backoff_max_s)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def call(self, method: str, route: str, body: bytes | dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer's JSON (module doc for what fails how)."""
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"content-type": "application/json"} if content is not None else None
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.failed_attempts += 1
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
                log.warning("%s: %s; retry %d/%d in %.1fs", self.url, error, attempt, self.retries, delay)
                time.sleep(delay)
            try:
                response = self._client.request(method, route, content=content, headers=headers)
            except self._httpx.TransportError as exc:  # timeouts, refused or reset connections
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    error = f"answer is not JSON ({response.status_code})"
                    continue
            if response.status_code < 500:
                raise RequestError(f"{self.url} refused the call ({response.status_code}): {_reason(response)}")
            error = f"{response.status_code}: {_reason(response)}"
        self.failed_calls += 1
        raise ServerError(f"{self.url} failed after {self.retries + 1} attempts: {error}")

    def close(self) -> None:
        self._client.close()


def _reason(response: Any) -> str:
    """The server's own one-line reason: ours ({"error": "..."}) or OpenAI's ({"error": {"message": ...}})."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return text.splitlines()[0][:300] if text else "no reason given"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return " ".join(str(error).split())[:300]
