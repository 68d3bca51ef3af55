"""Suite-wide setup: torch's threads wait without spinning, and the objects alive after collection are moved
out of the cyclic garbage collector's sight.

Importing `app` sets OMP_WAIT_POLICY=PASSIVE as the `lrm-robot` command has it (app/__init__.py says why): here
before any test module loads torch (no plugin imports torch), so tests of every package, and the subprocesses
they start, wait passively too (500 BC steps: 18-41 s spinning at load ~5, 8.5 s passive).

ManiSkill calls `gc.collect()` whenever it rebuilds a scene, and `ManiSkillEnv.reset` rebuilds on every
reset. A full collection walks every tracked object of the process; after collecting the whole suite
(torch, transformers, LeRobot and every test module imported) that is ~700k objects and ~0.4 s per reset,
against ~0.05 s once they are frozen. `gc.freeze()` only stops the collector from scanning what exists now
(modules, classes, functions): everything a test creates is collected as before, and reference counting
still frees frozen objects. Nothing is alive yet that a test would need collected (no fixture has run).
"""

from __future__ import annotations

import gc

import pytest

import app  # noqa: F401  (sets OMP_WAIT_POLICY before torch is loaded)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
