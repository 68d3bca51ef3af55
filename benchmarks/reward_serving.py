"""Reward serving throughput: queries/s with 1, 4 and 16 concurrent clients, batched vs unbatched, one run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/reward_serving.py --seconds 4 --out benchmarks/results/reward_serving.json

A local Ray cluster serves a compact lite model (random weights, 64x64 frames)
twice: batched (max_batch_size 32, 5 ms wait) and unbatched (max_batch_size 1).
Each client is a thread with its own `remote` backend sending one request per
call, as a rollout worker of one env does. Also measured: the per-query time
of in-process scoring vs the remote path with one client (the overhead of
HTTP, JSON and the Serve proxy). Client threads share this machine's cores
with the server: the numbers are a floor for a separate GPU server.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.lrm.serving_client import seeded_requests  # noqa: E402


def build_lite(path: pathlib.Path) -> str:
    import torch

    from lrm.backends.lite import LiteRewardModel
    from lrm.backends.lite_config import LiteConfig

    torch.manual_seed(0)
    return str(LiteRewardModel(LiteConfig(image_size=(64, 64), task_embedding_dim=0)).save_pretrained(path))


def run_clients(url: str, clients: int, seconds: float) -> dict:
    from lrm.backends.remote import RemoteBackendConfig, RemoteRewardModel

    requests = seeded_requests(seed=0, count=30, side=64)
    counts = [0] * clients
    latencies: list[float] = []
    models = [RemoteRewardModel(RemoteBackendConfig(url=url, serves="lite", retries=0)) for _ in range(clients)]
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        i = 0
        while time.monotonic() < stop:
            start = time.perf_counter()
            models[k].score([requests[i % len(requests)]])
            latencies.append(time.perf_counter() - start)
            counts[k] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    return {"clients": clients, "queries": sum(counts), "queries_per_s": sum(counts) / elapsed,
            "median_latency_ms": 1000 * statistics.median(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--out", default="benchmarks/results/reward_serving.json")
    args = parser.parse_args()

    import httpx
    from ray import serve

    from common.config import ConfigFile
    from lrm.backends import RewardBackendConfig, make_reward_backend
    from lrm.backends.lite_config import LiteBackendConfig
    from lrm.serving.app import build_app, start_ray
    from lrm.serving.config import ServeConfig

    checkpoint = build_lite(pathlib.Path(tempfile.mkdtemp()) / "lite")
    backend = RewardBackendConfig(type="lite", lite=LiteBackendConfig(checkpoint=checkpoint, device="cpu"))
    file = ConfigFile("", RewardBackendConfig)
    file._config = backend
    port = 8765
    start_ray(num_cpus=2)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    modes = {"batched": dict(max_batch_size=32, batch_wait_timeout_s=0.005),
             "unbatched": dict(max_batch_size=1, batch_wait_timeout_s=0.0)}
    for name, settings in modes.items():
        config = ServeConfig(backend=file, port=port, name=name, route_prefix=f"/{name}", cpus_per_replica=1,
                             **settings)
        serve.run(build_app(config), name=name, route_prefix=config.route_prefix, blocking=False)

    results: dict = {"command": " ".join(["benchmarks/reward_serving.py", *sys.argv[1:]]),
                     "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
                     "model": "lite, random weights, 64x64 frames", "throughput": {}}
    for name in modes:
        url = f"http://127.0.0.1:{port}/{name}/"
        run_clients(url, 1, 1.0)  # warm-up
        results["throughput"][name] = [run_clients(url, n, args.seconds) for n in (1, 4, 16)]
        results["throughput"][name + "_server"] = {k: v for k, v in httpx.get(url + "health").json().items()
                                                   if k in ("batches", "mean_batch_size", "max_batch_size")}
        print(name, results["throughput"][name], flush=True)

    local = make_reward_backend(backend)
    requests = seeded_requests(seed=0, count=30, side=64)
    for r in requests[:5]:
        local.score([r])
    start = time.perf_counter()
    for r in requests * 5:
        local.score([r])
    in_process = (time.perf_counter() - start) / (len(requests) * 5)
    remote = results["throughput"]["unbatched"][0]["median_latency_ms"] / 1000
    results["per_query_s"] = {"in_process": in_process, "remote_one_client_median": remote,
                              "remote_overhead": remote - in_process}
    results["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(results["per_query_s"]), flush=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
