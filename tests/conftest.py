"""Suite-wide setup: torch's threads wait without spinning, and the objects alive after collection are moved
out of the cyclic garbage collector's sight.

torch's OpenMP threads spin between parallel regions by default (OMP_WAIT_POLICY=active). On a machine shared
with other jobs a spinning thread burns its slice waiting for one that is descheduled: 500 BC steps took 18-41 s
with two threads at load ~5, 8.5 s with passive waiting. The threads and the numbers stay the same. libgomp
reads the variable when torch is first loaded, which is after this file (no plugin imports torch); the
subprocesses that tests start inherit it.

ManiSkill calls `gc.collect()` whenever it rebuilds a scene, and `ManiSkillEnv.reset` rebuilds on every
reset. A full collection walks every tracked object of the process; after collecting the whole suite
(torch, transformers, LeRobot and every test module imported) that is ~700k objects and ~0.4 s per reset,
against ~0.05 s once they are frozen. `gc.freeze()` only stops the collector from scanning what exists now
(modules, classes, functions): everything a test creates is collected as before, and reference counting
still frees frozen objects. Nothing is alive yet that a test would need collected (no fixture has run).
"""

from __future__ import annotations

import gc
import os

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
