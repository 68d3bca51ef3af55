"""Reward serving for real: a local Ray cluster serves the lite model and the tiny Qwen3-VL to remote clients.

One cluster and one Serve instance for the whole module (Ray's start-up is the
slow part on two cores); two applications on it: the lite model (batched)
and the tiny Qwen3-VL with its three adapters. The last test kills the lite
replica. Run alone with `-m serving`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from lrm.backends import RewardBackendConfig, make_reward_backend
from lrm.backends.lite_config import LiteBackendConfig
from lrm.backends.qwen3vl import Qwen3VLBackendConfig
from lrm.backends.remote import RemoteBackendConfig, RemoteRewardModel
from lrm.guarded import GuardedRewardModel
from lrm.serving.wire import encode_array, encode_requests
from lrm.types import MODALITIES, RequestError
from tests.app.test_operator_app import make_lite_judge
from tests.lrm.serving_client import seeded_requests
from tests.support.tiny_reward_models import TinyModelPaths
from tests.support.cli import free_port

pytestmark = pytest.mark.serving

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")



class Cluster:
    def __init__(self, port: int, lite: RewardBackendConfig, qwen: RewardBackendConfig) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.lite, self.qwen = lite, qwen

    def url(self, app: str) -> str:
        return f"{self.base}/{app}/"

    def remote(self, app: str, serves: str, **settings) -> RemoteRewardModel:
        return RemoteRewardModel(RemoteBackendConfig(url=self.url(app), serves=serves, **settings))


def _serve_config(backend: RewardBackendConfig, name: str, port: int, **settings):
    from common.config import ConfigFile
    from lrm.serving.config import ServeConfig

    file = ConfigFile("", RewardBackendConfig)
    file._config = backend  # built in code: no YAML to read
    return ServeConfig(backend=file, host="127.0.0.1", port=port, name=name, route_prefix=f"/{name}",
                       cpus_per_replica=0, **settings)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_qwen3vl: TinyModelPaths):
    from lrm.serving.app import build_app, start_ray

    judge = make_lite_judge(tmp_path_factory.mktemp("lite") / "judge")
    lite = RewardBackendConfig(type="lite", lite=LiteBackendConfig(checkpoint=str(judge), device="cpu"))
    qwen = RewardBackendConfig(type="qwen3vl", qwen3vl=Qwen3VLBackendConfig(
        model=str(tiny_qwen3vl.base), adapters={m: str(tiny_qwen3vl.adapters[m]) for m in MODALITIES},
        mode="logits", max_new_tokens=6, max_new_tokens_direct=4, image_size=(32, 32), max_batch_size=4))
    port = free_port()
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    start_ray(num_cpus=2)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for backend, name, settings in ((lite, "lite", dict(max_batch_size=8, batch_wait_timeout_s=0.05)),
                                    (qwen, "qwen", dict(max_batch_size=4, batch_wait_timeout_s=0.01))):
        config = _serve_config(backend, name, port, **settings)
        serve.run(build_app(config), name=name, route_prefix=config.route_prefix, blocking=False)
    yield Cluster(port, lite, qwen)
    serve.shutdown()
    ray.shutdown()


def test_health_names_the_model_and_its_adapters(cluster: Cluster) -> None:
    lite = httpx.get(cluster.url("lite") + "health").json()
    assert lite["backend"] == "lite" and lite["model"]["checkpoint"] == cluster.lite.lite.checkpoint
    assert lite["max_batch_size"] == 8 and lite["status"] == "ok"
    qwen = httpx.get(cluster.url("qwen") + "health").json()
    assert set(qwen["adapters"]) == set(MODALITIES) and qwen["modalities"] == list(MODALITIES)


def test_remote_scores_equal_in_process_scores(cluster: Cluster) -> None:
    requests = seeded_requests(seed=1, count=9)
    for app, backend in (("lite", cluster.lite), ("qwen", cluster.qwen)):
        local = make_reward_backend(backend).score(requests)
        for encoding in ("raw", "png"):
            remote = cluster.remote(app, backend.type, frame_encoding=encoding).score(requests)
            np.testing.assert_allclose([r.value for r in remote], [r.value for r in local], rtol=1e-5, atol=1e-6)
            assert [r.probs.keys() for r in remote] == [r.probs.keys() for r in local]


def test_requests_of_one_call_are_batched_together(cluster: Cluster) -> None:
    before = httpx.get(cluster.url("lite") + "health").json()["batches"]
    cluster.remote("lite", "lite").score(seeded_requests(seed=2, count=8))
    after = httpx.get(cluster.url("lite") + "health").json()
    assert after["batches"] - before == 1  # eight requests, max_batch_size 8: one batch


def test_a_malformed_call_gets_a_clear_error_and_others_are_served(cluster: Cluster) -> None:
    score = cluster.url("lite") + "score"
    good = encode_requests(seeded_requests(seed=3, count=1))
    bad_dtype = json.loads(good)
    bad_dtype["requests"][0]["frames"]["current"]["dtype"] = "float64"
    huge = json.loads(good)
    huge["requests"][0]["frames"]["current"] = {"shape": [5000, 5000, 3], "dtype": "uint8", "data": ""}
    missing = json.loads(good)
    missing["requests"][0]["frames"] = {"current": encode_array(np.zeros((8, 8, 3), np.uint8))}
    missing["requests"][0]["modality"] = "contrastive"
    cases = {b"not json": "not JSON", json.dumps(bad_dtype).encode(): "dtype must be 'uint8'",
             json.dumps(huge).encode(): "the limit is", json.dumps(missing).encode(): "needs frame(s) ['previous']",
             b'{"requests": [1]}': "must be an object"}
    for body, reason in cases.items():
        answer = httpx.post(score, content=body)
        assert answer.status_code == 400 and reason in answer.json()["error"], answer.text
        assert "\n" not in answer.json()["error"]
    assert httpx.post(score, content=good).status_code == 200
    with pytest.raises(RequestError, match="not found|no route|404"):
        cluster.remote("lite", "lite").client.call("POST", "nothing", b"{}")


def test_a_server_of_another_type_is_refused(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="serves the 'lite' backend"):
        cluster.remote("lite", "qwen3vl")


def test_concurrent_client_processes_get_their_own_answers(cluster: Cluster) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    runs = [(app, backend, seed) for app, backend in (("lite", cluster.lite), ("qwen", cluster.qwen))
            for seed in (10, 11)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.lrm.serving_client", cluster.url(app), backend.type,
                               str(seed), "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for app, backend, seed in runs]
    models = {"lite": make_reward_backend(cluster.lite), "qwen": make_reward_backend(cluster.qwen)}
    for proc, (app, _, seed) in zip(procs, runs, strict=True):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        expected = [r.value for r in models[app].score(seeded_requests(seed, 6))]
        np.testing.assert_allclose(json.loads(out), expected, rtol=1e-5, atol=1e-6)


def test_killing_the_replica_costs_retried_counted_queries_not_the_loop(cluster: Cluster) -> None:
    remote = cluster.remote("lite", "lite", retries=2, backoff_s=0.1, backoff_max_s=0.2, timeout_s=3)
    guard = GuardedRewardModel(remote)
    requests = seeded_requests(seed=4, count=3)
    expected = [r.value for r in make_reward_backend(cluster.lite).score(requests)]
    done: list[list[float]] = []
    failed: list[bool] = []
    held = 0

    def loop() -> None:  # a client's scoring loop, as the rollout runs it
        nonlocal held
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (len(done) < 10 or not remote.failed_attempts or failed[-1]):
            rewards = guard.score(requests)
            failed.append(any(r.failed for r in rewards))
            held += sum(r.failed for r in rewards)
            done.append([r.value for r in rewards])

    client = threading.Thread(target=loop)
    client.start()
    time.sleep(0.5)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "lite" in a["name"]
                and "REPLICA" in a["name"].upper()]
    assert replicas, ray.util.list_named_actors(all_namespaces=True)
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    client.join(timeout=90)
    assert not client.is_alive()
    assert remote.failed_attempts >= 1  # the dead replica's calls were retried
    assert guard.failure_count == held <= remote.failed_calls  # a held reward is a call out of retries, counted
    for values, held in zip(done, failed, strict=True):
        if not held:
            np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(done[-1], expected, rtol=1e-5, atol=1e-6)  # served again by the new replica
