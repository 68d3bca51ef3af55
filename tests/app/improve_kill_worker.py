"""Server process for the improve resume tests: forks one child per run, which SIGKILLs itself at a chosen event.

    python improve_kill_worker.py

It imports torch, ManiSkill and the improve loop once (~7 s on two cores, which
a fresh process per kill paid again), then reads one run a line from stdin, a
JSON list:

    ["CONFIG.yaml", "EVENT", "KEY=VALUE", ...]

and forks a child for it. The child runs `ImproveRun` and kills itself
(SIGKILL: no cleanup, no atexit, no flush) the first time the run reports
event EVENT whose info matches every KEY=VALUE (values compared as strings),
e.g. `rollout-step round=1 slot=1 step=5` lands in the middle of recording an
episode. When the child is gone the server prints `exit CODE`: -9 when it was
killed, 3 when the event never came, 1 when the run raised. The server only
imports before it forks: no scene, renderer or torch computation has started
(as in the fork server of sim.vector_env.AsyncSim, which preloads the same).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def run(config_path: str, event: str, conditions: list[str]) -> int:
    from common.config import load_config
    from app.improve.config import ImproveConfig
    from app.improve.loop import ImproveRun

    wanted = dict(c.split("=", 1) for c in conditions)

    def events(name: str, info: dict) -> None:
        if name == event and all(str(info.get(k)) == v for k, v in wanted.items()):
            print(f"killing at {name} {info}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    ImproveRun(load_config(config_path, ImproveConfig), events=events).run()
    return 3


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import app.improve.loop  # noqa: F401
    from sim.vulkan import prepare_sim_env

    prepare_sim_env()  # before mani_skill is imported: it reads the asset folder then
    import mani_skill.envs  # noqa: F401

    # ManiSkill runs gc.collect() at every scene rebuild (every reset): freeze what the imports made, so that it
    # scans only what a run creates (~0.4 s -> ~0.05 s a reset), as the test process does (tests/conftest.py)
    gc.collect()
    gc.freeze()
    for line in sys.stdin:
        config_path, event, *conditions = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = run(config_path, event, conditions)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
