"""The settings of `lrm-robot serve` (configs/serve/*.yaml): which backend, where, how batched, how many copies."""

from __future__ import annotations

import dataclasses

from common.config import ConfigFile, config_file
from lrm.backends import RewardBackendConfig


@dataclasses.dataclass
class ServeConfig:
    """A reward backend served over HTTP by Ray Serve (lrm.serving.app).

    `backend` is a configs/lrm/backends/*.yaml (any type but `remote`). The server
    binds to `host`:`port`, 127.0.0.1 unless told otherwise: a reward server has no
    authentication, so reaching it from another machine is an explicit choice
    (`host: 0.0.0.0` on a trusted network, or an SSH tunnel). Requests of all
    clients are gathered into batches of up to `max_batch_size` requests, waiting at
    most `batch_wait_timeout_s` for a batch to fill (1 turns batching off).
    `num_replicas` copies of the model run, each with `gpus_per_replica` GPUs and
    `cpus_per_replica` CPUs. `ray_address` joins a running Ray cluster (None: start
    one on this machine). The limits bound what one call may carry (lrm.serving.wire).
    """

    backend: ConfigFile[RewardBackendConfig] = config_file(RewardBackendConfig, "configs/lrm/backends/lite.yaml")
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = "lrm"
    route_prefix: str = "/"
    num_replicas: int = 1
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.01
    max_ongoing_requests: int = 64
    max_requests_per_call: int = 256
    max_frame_pixels: int = 4096 * 4096
    max_video_frames: int = 64
    max_body_bytes: int = 256 * 1024 * 1024
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name in ("num_replicas", "max_batch_size", "max_ongoing_requests", "max_requests_per_call",
                     "max_frame_pixels", "max_video_frames", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gpus_per_replica", "cpus_per_replica", "batch_wait_timeout_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")
