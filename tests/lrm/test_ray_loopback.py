"""A local Ray started the project's way (lrm.serving.app.start_ray) listens on loopback only.

Issue 18, item 5: every listener binds to localhost by default. Ray's GCS, raylet,
object manager, core workers and agents would otherwise listen on all interfaces;
this starts Ray and Serve's HTTP proxy as `lrm-robot serve` does and reads the
listening TCP sockets of this process and all its descendants (the Ray processes).
"""

from __future__ import annotations

import ipaddress
import os
import time

import psutil
import pytest
from tests.support.cli import free_port

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")



def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1, a dual-stack socket bound to loopback
    return address.is_loopback


def ray_listeners() -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every listening TCP socket of this process and its descendants."""
    me = psutil.Process()
    names = {me.pid: "driver"}
    for child in me.children(recursive=True):
        try:
            names[child.pid] = child.name()
        except psutil.NoSuchProcess:
            continue
    return sorted((names[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="tcp")
                  if c.status == psutil.CONN_LISTEN and c.pid in names)


def test_loopback_switch_is_restored_after_start() -> None:
    import ray._private.ray_constants as ray_constants

    from lrm.serving.app import local_ray_listens_on_loopback

    before = (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER)
    with local_ray_listens_on_loopback():
        assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and not ray_constants.ENABLE_RAY_CLUSTER
    assert (os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"), ray_constants.ENABLE_RAY_CLUSTER) == before


@pytest.mark.serving
def test_every_ray_listener_is_on_loopback() -> None:
    from lrm.serving.app import start_ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    start_ray(num_cpus=1)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})  # as start_serve does
        deadline = time.monotonic() + 30  # the agents come up after ray.init returns
        while True:
            listeners = ray_listeners()
            names = {name for name, _, _ in listeners}
            if {"gcs_server", "raylet"} <= names and any("Agent" in n for n in names) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert {"gcs_server", "raylet"} <= names, listeners  # the check sees the Ray processes at all
        exposed = [listener for listener in listeners if not _is_loopback(listener[1])]
        assert not exposed, f"Ray listens beyond loopback: {exposed}"
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    finally:
        serve.shutdown()
        ray.shutdown()
