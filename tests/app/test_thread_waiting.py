"""The lrm-robot process makes torch's threads wait passively unless the user chose otherwise (app/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import app, os; print(os.environ['OMP_WAIT_POLICY'])"


def _probe(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_torch_threads_wait_passively_by_default_and_a_users_setting_wins():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _probe(env) == "PASSIVE"
    assert _probe({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
