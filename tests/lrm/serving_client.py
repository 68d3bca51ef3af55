"""A reward client in its own process: `python -m tests.lrm.serving_client URL SERVES SEED COUNT`.

Scores `COUNT` seeded calls through a `remote` backend and prints the values as
one JSON line, so a test can run several of these at once against one server
and compare each with in-process scoring of the same requests.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from lrm.types import MODALITIES, RewardRequest


def seeded_requests(seed: int, count: int, side: int = 32) -> list[RewardRequest]:
    """`count` requests of every modality in turn, frames drawn from `seed`."""
    rng = np.random.default_rng(seed)
    requests = []
    for i in range(count):
        modality = MODALITIES[i % len(MODALITIES)]
        names = {"contrastive": ("current", "previous"), "progress": ("current", "first"),
                 "completion": ("current",)}[modality]
        frames = {n: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for n in names}
        requests.append(RewardRequest(modality=modality, frames=frames, task="pick up the cube", env_id=i,
                                      previous_value=0.0))
    return requests


def main(argv: list[str]) -> int:
    from lrm.backends.remote import RemoteBackendConfig, RemoteRewardModel

    url, serves, seed, count = argv[0], argv[1], int(argv[2]), int(argv[3])
    model = RemoteRewardModel(RemoteBackendConfig(url=url, serves=serves, timeout_s=60, retries=2, backoff_s=0.2))
    values = []
    for request in seeded_requests(seed, count):  # one call per request: clients interleave on the server
        values.append(model.score([request])[0].value)
    print(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
