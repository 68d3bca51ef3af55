"""The bad inputs of issue 18, shared by tests/app/test_bad_inputs.py and benchmarks/reliability.py.

Every case is a command line `lrm-robot` must refuse with exit code 2 and one line on
stderr (`lrm-robot COMMAND: error: ...`), before any work starts; the expected text is
part of that line. The tests assert each case; the reliability benchmark counts them.
"""

from __future__ import annotations

import pathlib

from tests.support.shipped_configs import SHIPPED, shipped_files

# one shipped config per command that reads one, and the arguments that run it on a config file
COMMANDS = {}
for _file in shipped_files():
    for _shipped in SHIPPED:
        if _shipped.command and _shipped.command[0] not in COMMANDS and _file.match(_shipped.pattern):
            COMMANDS[_shipped.command[0]] = (_shipped.command, _file)


def argv_for(command: str, config: pathlib.Path, store: pathlib.Path) -> list[str]:
    words, _ = COMMANDS[command]
    return [str(store) if w == "STORE" else w for w in words] + [str(config)]


# config files broken in five ways: (content, what the error line says); "binary" says byte 0 for a whole file
BROKEN_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not UTF-8 text (byte 8 is 0x00)"),
    "latin-1": ("rounds: 2\ntask: caf\u00e9\n".encode("latin-1"), "is not UTF-8 text (byte 19 is 0xe9)"),
    "nested": (("a: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nested more than 64 levels deep"),
    "repeated-key": (b"output_dir: a\noutput_dir: b\n", "key 'output_dir' is given twice (first at line 1)"),
    "not-yaml": (b"a: [unclosed\n", "invalid YAML at line 2"),
}

LEARNING_RATES = [
    ("train-policy", "configs/policies/bc_pickcube.yaml", "lr"),
    ("train-policy", "configs/policies/pi05_finetune_pickcube.yaml", "optimizer_lr"),
    ("ppo", "configs/ppo/pickcube_lite.yaml", "ppo.learning_rate"),
    ("ppo", "configs/ppo/pickcube_lite.yaml", "ppo.value_learning_rate"),
    ("train-lrm", "configs/lrm/train/lite_pickcube.yaml", "train.lr"),
    ("train-lrm", "configs/lrm/train/lora_pickcube.yaml", "train.lr"),
]

# (value, what the error line says) for each learning rate of LEARNING_RATES, given with --set
LEARNING_RATE_VALUES = [(".nan", "must be a finite number, got nan"),
                        ("-.inf", "must be a finite number, got -inf"),
                        ("-3e-4", "must be more than 0, got -0.0003"),
                        ("0", "must be more than 0, got 0"),
                        ("30", "must be at most 1, got 30")]

# (argv, what the error line says): numbers and names out of range from flags (run in the repository root)
FLAG_CASES = [
    (["improve", "--set", "rollouts_per_round=1e23"],
     "--set rollouts_per_round=1e23: key 'rollouts_per_round': expected int, got 1e23 "
     "(write a whole number without an exponent)"),
    (["improve", "--set", "rollouts_per_round=100000000000000000000000"],
     "must be at most 1000000, got 100000000000000000000000"),
    (["improve", "--rounds", "-1"], "--rounds -1: key 'rounds': must be at least 0, got -1"),
    (["demos", "--seed", "-1"], "--seed -1: key 'seed': must be at least 0, got -1"),
    (["demos", "--max-attempts", "0"],
     "--max-attempts 0: key 'max_attempts': must be at least 1, got 0"),
    (["demos", "-n", "0"], "--num-episodes 0: key 'num_episodes': must be at least 1, got 0"),
    (["demos", "--camera-size", "99999x99999"],
     "argument --camera-size: '99999x99999': each side must be at most 4096, got 99999"),
    (["demos", "--camera-size", "128"], "argument --camera-size: '128' is not WIDTHxHEIGHT (e.g. 128x128)"),
    (["eval-policy", "--random", "--seed", "-1"], "--seed -1: key 'seed': must be at least 0, got -1"),
    (["eval-policy", "--random", "--episodes", "0"],
     "--episodes 0: key 'episodes': must be at least 1, got 0"),
    (["ppo", "--config", "configs/ppo/pickcube_lite.yaml", "--iterations", "0"],
     "--iterations 0: key 'iterations': must be at least 1, got 0"),
    (["ppo", "--config", "configs/ppo/pickcube_lite.yaml", "--set", "env.sim.camera_width=99999"],
     "--set env.sim.camera_width=99999: key 'env.sim.camera_width': must be at most 4096, got 99999"),
    (["robot-check", "--config", "configs/robot/so101.yaml", "--seconds", "nan"],
     "--seconds must be more than 0 and at most 3600, got nan"),
    (["improve", "--set", "judge.camera=wrist_camera"],
     "judge camera 'wrist_camera' is not among env.sim.cameras ['base_camera']"),
]

# argparse's own errors ("STORE" is a small store)
ARGPARSE_CASES = [
    [], ["store"], ["demos", "--bogus"], ["view", "STORE"], ["store", "export", "STORE", "--source", "moon"],
    ["demos", "--seed", "x"], ["nonsense-command"],
]

# --fps of `store export`
EXPORT_FPS_VALUES = ["nan", "-1", "inf"]


def output_cases(store: pathlib.Path, a_file: pathlib.Path, tmp_path: pathlib.Path) -> list[tuple[list[str], str]]:
    """(argv, expected) for output paths that are a file, lie under a file, or cannot be written."""
    unwritable = pathlib.Path("/proc/lrm-robot-test/out")  # not even root creates files in /proc
    return [
        (["eval-policy", "--random", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["eval-policy", "--random", "--output-dir", str(a_file / "eval")],
         f"output_dir {a_file / 'eval'}: {a_file} is a file, not a folder"),
        (["eval-policy", "--random", "--output-dir", str(unwritable)], "/proc is not writable ("),
        (["eval-policy", "--random", "--record", str(a_file)], f"record {a_file}: is a file; name a folder"),
        (["improve", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["improve", "--output-dir", str(unwritable)], "/proc is not writable ("),
        (["ppo", "--config", "configs/ppo/pickcube_oracle.yaml", "--output-dir", str(a_file / "run")],
         f"{a_file} is a file, not a folder"),
        (["train-policy", "--config", "configs/policies/bc_pickcube.yaml", "--store", str(store), "--output-dir",
          str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["train-lrm", "--config", "configs/lrm/train/lite_pickcube.yaml", "--store", str(store), "--output-dir",
          str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["eval-reward", "--config", "configs/lrm/eval/oracle.yaml", "--output-dir", str(a_file)],
         f"output_dir {a_file}: is a file; name a folder"),
        (["demos", "--output-dir", str(a_file)], f"output_dir {a_file}: is a file; name a folder"),
        (["view", str(store), "--episode", "0", "--save", str(a_file / "x.rrd")], f"{a_file} is a file, not a folder"),
        (["score", str(store), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml", "--output-dir",
          str(a_file)], f"--output-dir {a_file}: is a file; name a folder"),
        (["score", str(store), "--episode", "0", "--backend", "configs/lrm/backends/oracle.yaml", "--output-dir",
          str(tmp_path / "score"), "--rrd", str(unwritable / "x.rrd")], "/proc is not writable ("),
        (["store", "export", str(store), "--output-dir", str(a_file)], f"--output-dir {a_file}: is a file; name a folder"),
        (["robot-check", "--config", "configs/robot/so101.yaml", "--json", str(tmp_path)],
         f"--json {tmp_path}: is a folder; name a file"),
    ]
