"""`lrm-robot serve --config CONFIG`: host a reward backend for many clients (Ray Serve, lrm.serving).

The config (configs/serve/*.yaml, `lrm.serving.config.ServeConfig`) names the
backend YAML, where to listen (127.0.0.1 unless told otherwise), the batching
and the replicas. Clients point a `type: remote` backend YAML at the printed URL.
The backend is checked before Ray starts, so a broken config fails in one line
at once, not after Ray's start-up. Runs until interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import time

from app.commands._conventions import add_command
from app.commands._options import add_config_option, add_set_option, load_command_config
from app.errors import UsageError

log = logging.getLogger(__name__)

ORDER = 47


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "serve",
        help="serve a reward backend over HTTP to many robots and simulators (Ray Serve, dynamic batching)",
        description=(
            "Host any reward backend (configs/lrm/backends/*.yaml) as a Ray Serve application: POST /score "
            "(requests of all clients batched together), GET /health. Clients use a `type: remote` backend."
        ),
        example="lrm-robot serve --config configs/serve/lite.yaml --port 8000",
    )
    add_config_option(parser, "YAML config (see configs/serve/)")
    parser.add_argument("--host", metavar="HOST", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, metavar="PORT", help="port to listen on")
    add_set_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lrm.serving.config import ServeConfig

    config = load_command_config(args, ServeConfig, {"host": args.host, "port": args.port})
    backend = config.backend.config
    if backend.type == "remote":
        raise UsageError(f"backend {config.backend}: a remote backend cannot be served again; name the model's YAML")
    if backend.type == "lite" and not backend.lite.checkpoint:
        raise UsageError(f"backend {config.backend}: lite.checkpoint is empty")
    from lrm.serving.app import start_ray, start_serve

    start_ray(config.ray_address)
    try:
        start_serve(config)
    except Exception as exc:  # noqa: BLE001 - Ray reports a replica that cannot start as a long RuntimeError
        raise UsageError(f"the {backend.type} backend did not start: {_first_line(exc)}") from None
    prefix = config.route_prefix.rstrip("/")
    print(f"serving {backend.type} ({config.num_replicas} replica(s)) at http://{config.host}:{config.port}{prefix}/ "
          f"(POST {prefix}/score, GET {prefix}/health); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
    return 0


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__  # Ray puts the replica's own error last
