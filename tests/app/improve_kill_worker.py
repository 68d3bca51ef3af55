"""Fork server for the improve resume tests: each child runs `ImproveRun` and SIGKILLs itself at a chosen event.

    python improve_kill_worker.py

imports torch, ManiSkill and the improve loop once (tests/support/fork_server.py),
then forks a child for each line of stdin, a JSON list:

    CONFIG.yaml EVENT KEY=VALUE...

The child kills itself (SIGKILL: no cleanup, no atexit, no flush) the first
time `ImproveRun` reports event EVENT whose info matches every KEY=VALUE
(values compared as strings), e.g. `rollout-step round=1 slot=1 step=5` lands
in the middle of recording an episode. Exit code 3 means the event never came.
No scene, renderer or torch computation has started in the server (the fork
server of sim.vector_env.AsyncSim preloads the same modules).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def run(argv: list[str]) -> int:
    from common.config import load_config
    from app.improve.config import ImproveConfig
    from app.improve.loop import ImproveRun

    config_path, event, *conditions = argv
    wanted = dict(c.split("=", 1) for c in conditions)

    def events(name: str, info: dict) -> None:
        if name == event and all(str(info.get(k)) == v for k, v in wanted.items()):
            print(f"killing at {name} {info}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    ImproveRun(load_config(config_path, ImproveConfig), events=events).run()
    return 3


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import app.improve.loop  # noqa: F401
    from sim.vulkan import prepare_sim_env
    from tests.support.fork_server import serve

    prepare_sim_env()  # before mani_skill is imported: it reads the asset folder then
    import mani_skill.envs  # noqa: F401

    # each child freezes these imports before its first scene (sim.maniskill_env), so resets stay cheap
    serve(run)


if __name__ == "__main__":
    main()
