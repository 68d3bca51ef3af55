"""Any reward backend as a Ray Serve application: many clients, one model, dynamic batches.

One replica holds one backend (lrm.backends.make_reward_backend) and answers

- `POST <prefix>/score`: a wire-format body (lrm.serving.wire) of RewardRequests,
  answered with their Rewards in order;
- `GET <prefix>/health`: the backend, its model and adapters, the modalities it
  answers, the batching settings and how many batches this replica has scored.

Each request of a call is queued on its own into `@serve.batch`, so requests of
different clients (and of one client's call) are scored together, up to
`max_batch_size` per batch after at most `batch_wait_timeout_s` of waiting. A
malformed call is refused whole with 400 and a one-line reason before it
reaches a batch, so it never costs another client anything; a backend that
fails on a batch has each of its requests scored alone, so one request that
breaks the model fails only its own call (500), the others get their answers.
The model runs in a worker thread: the replica keeps accepting requests into
the next batch while one is being scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.serving.config import ServeConfig
from lrm.serving.wire import WireError, WireLimits, decode_requests, encode_rewards
from lrm.types import RequestError, Reward, RewardRequest, validate_request

log = logging.getLogger(__name__)

__all__ = ["RewardServer", "build_app", "health_record", "local_ray_listens_on_loopback", "start_ray", "start_serve"]


@dataclasses.dataclass(frozen=True)
class ReplicaSettings:
    """What a replica needs besides the backend: its batching and the size limits of a call."""

    max_batch_size: int
    batch_wait_timeout_s: float
    limits: WireLimits

    @classmethod
    def of(cls, config: ServeConfig) -> ReplicaSettings:
        limits = WireLimits(max_requests=config.max_requests_per_call, max_frame_pixels=config.max_frame_pixels,
                            max_video_frames=config.max_video_frames, max_body_bytes=config.max_body_bytes)
        return cls(config.max_batch_size, config.batch_wait_timeout_s, limits)


def health_record(backend: RewardBackendConfig, model: Any) -> dict[str, Any]:
    """What /health says about the loaded model: backend, model, adapters, modalities."""
    adapters: dict[str, str] = {}
    if backend.type == "qwen3vl":
        loaded = set(getattr(getattr(model, "model", None), "peft_config", {}) or {})
        adapters = {m: str(source) for m, source in backend.qwen3vl.adapters.items() if m in loaded}
    return {
        "backend": backend.type,
        "model": backend.describe(),
        "adapters": adapters,
        "modalities": list(backend.modalities),
        "needs_video": bool(getattr(model, "needs_video", False)),
    }


class RewardServer:
    """One replica: a backend behind /score and /health (module doc). Deployed by `build_app`."""

    def __init__(self, backend: RewardBackendConfig, settings: ReplicaSettings) -> None:
        from ray import serve

        if backend.type == "remote":
            raise ValueError("serve: the backend to serve cannot itself be remote")
        self.backend = backend
        self.settings = settings
        self.model = make_reward_backend(backend)
        self.health = health_record(backend, self.model)
        self.batches = 0
        self.batched_requests = 0
        self.replica = serve.get_replica_context().replica_tag
        self._score_batch.set_max_batch_size(settings.max_batch_size)
        self._score_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        log.info("replica %s serves %s", self.replica, self.health)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/health"):
            return JSONResponse(self.health_now())
        if request.method != "POST" or not path.endswith("/score"):
            return JSONResponse({"error": f"no route {request.method} {request.url.path}; "
                                          "use POST .../score or GET .../health"}, status_code=404)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.settings.limits.max_body_bytes:
            return JSONResponse({"error": f"body of {declared} bytes is over the limit of "
                                          f"{self.settings.limits.max_body_bytes}"}, status_code=413)
        try:
            requests = decode_requests(await request.body(), self.settings.limits)
            for i, item in enumerate(requests):
                validate_request(item, i)
                if self.health["needs_video"] and item.video is None:
                    raise RequestError(f"request {i}: the {self.backend.type} backend needs the episode video")
        except (WireError, RequestError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        results = await asyncio.gather(*(self._score_batch(item) for item in requests))
        for i, result in enumerate(results):
            if isinstance(result, Exception):
                status = 400 if isinstance(result, RequestError) else 500
                return JSONResponse({"error": f"request {i}: {type(result).__name__}: {result}"}, status_code=status)
        return JSONResponse(encode_rewards(results))

    def health_now(self) -> dict[str, Any]:
        mean = self.batched_requests / self.batches if self.batches else 0.0
        return {**self.health, "status": "ok", "replica": self.replica,
                "max_batch_size": self.settings.max_batch_size,
                "batch_wait_timeout_s": self.settings.batch_wait_timeout_s,
                "batches": self.batches, "mean_batch_size": mean}

    async def _score_batch(self, requests: list[RewardRequest]) -> list[Reward | Exception]:
        """The batch handler (wrapped in serve.batch by build_app); an item fails alone, as an exception."""
        self.batches += 1
        self.batched_requests += len(requests)
        return await asyncio.to_thread(self._score_isolated, requests)

    def _score_isolated(self, requests: list[RewardRequest]) -> list[Reward | Exception]:
        try:
            return list(self.model.score(requests))
        except Exception as exc:  # noqa: BLE001 - find the request(s) that broke the batch, answer the rest
            if len(requests) == 1:
                log.warning("backend failed on a request: %s", exc)
                return [exc]
        return [self._score_isolated([item])[0] for item in requests]


def build_app(config: ServeConfig) -> Any:
    """The Ray Serve application of `config`: replicas, resources, batching."""
    from ray import serve

    # serve.batch wraps the method at class-definition time; the config's size and wait are set per replica
    server = type("RewardServer", (RewardServer,), {"_score_batch": serve.batch(RewardServer._score_batch)})
    deployment = serve.deployment(
        server,
        name="RewardServer",
        num_replicas=config.num_replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.cpus_per_replica, "num_gpus": config.gpus_per_replica},
    )
    return deployment.bind(config.backend.config, ReplicaSettings.of(config))


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join `address` or start a local Ray: no dashboard, workers importing this checkout's code.

    A local Ray listens on the loopback interface only (`local_ray_listens_on_loopback`):
    its GCS, raylet, object manager, workers and agents are unreachable from other
    machines; only Serve's HTTP proxy is exposed, on the ServeConfig's host. Joining a
    cluster (`address`, or RAY_ADDRESS) leaves Ray's networking to that cluster.
    """
    import ray

    if ray.is_initialized():
        return
    # replicas must import the same code as this process (a worktree on PYTHONPATH wins over an installed copy)
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    settings: dict[str, Any] = dict(address=address, include_dashboard=False,
                                    runtime_env={"env_vars": env} if env else None, logging_level=logging.WARNING,
                                    configure_logging=True)
    if address is not None or os.environ.get("RAY_ADDRESS"):
        ray.init(**settings)
        return
    with local_ray_listens_on_loopback():
        ray.init(**settings, num_cpus=num_cpus, _node_ip_address=LOOPBACK)


LOOPBACK = "127.0.0.1"
_RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def local_ray_listens_on_loopback() -> Iterator[None]:
    """While a local Ray starts, make 127.0.0.1 its node address, so every Ray server binds to loopback.

    On Linux Ray replaces a loopback `_node_ip_address` by the machine's routable IP,
    and its gRPC servers (GCS, raylet, core workers, object manager) then listen on all
    interfaces. Ray's single-machine mode (the one it uses on macOS and Windows,
    switched by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) keeps the loopback address, and with
    it every server binds to 127.0.0.1. The processes started meanwhile inherit the switch;
    this process gets its old setting back afterwards, so joining a cluster later works.
    Checked by tests/lrm/test_ray_loopback.py (the listening sockets of all Ray processes).
    """
    import ray._private.ray_constants as ray_constants

    before_env, before_flag = os.environ.get(_RAY_CLUSTER_SWITCH), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(_RAY_CLUSTER_SWITCH, None)
        else:
            os.environ[_RAY_CLUSTER_SWITCH] = before_env


def start_serve(config: ServeConfig, *, blocking: bool = False) -> Any:
    """Start Serve's HTTP proxy on config.host:port and deploy the application; its handle."""
    from ray import serve

    serve.start(http_options={"host": config.host, "port": config.port})
    return serve.run(build_app(config), name=config.name, route_prefix=config.route_prefix, blocking=blocking)
