"""Broken configs fail before any work starts, with one line naming file and key."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from common.config import ConfigError, ConfigFile, config_file, config_to_dict, load_config


@dataclass
class Camera:
    width: int = 128
    height: int = 128


@dataclass
class Env:
    env_id: str
    control_mode: Literal["pd_joint_pos", "pd_ee_delta_pose"] = "pd_joint_pos"
    cameras: dict[str, Camera] = field(default_factory=lambda: {"base_camera": Camera()})
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_episode_steps is not None and self.max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {self.max_episode_steps}")


@dataclass
class Run:
    env: Env
    episodes: int = 10
    learning_rate: float = 3e-4
    out: pathlib.Path = pathlib.Path("outputs/run")
    seeds: list[int] = field(default_factory=list)
    image_size: tuple[int, int] = (128, 128)
    record: bool = True


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_good_config_round_trips(tmp_path):
    path = write(
        tmp_path,
        """
env:
  env_id: PickCube-v1
  cameras: {base_camera: {width: 64, height: 48}}
  max_episode_steps: 50
episodes: 3
learning_rate: 1      # an int is a fine float
out: outputs/x
seeds: [1, 2]
image_size: [224, 224]
""",
    )
    run = load_config(path, Run)
    assert run.env.cameras["base_camera"] == Camera(width=64, height=48)
    assert run.learning_rate == 1.0 and isinstance(run.learning_rate, float)
    assert run.out == pathlib.Path("outputs/x")
    assert run.image_size == (224, 224)
    assert config_to_dict(run)["out"] == "outputs/x"


def test_overrides_apply_with_yaml_types(tmp_path):
    path = write(tmp_path, "env: {env_id: PickCube-v1}\n")
    run = load_config(path, Run, overrides=["episodes=7", "env.cameras.base_camera.width=32"])
    assert run.episodes == 7
    assert run.env.cameras["base_camera"].width == 32


def test_float_field_takes_yaml_1_1_scientific_notation(tmp_path):
    # PyYAML reads 3e-4 (no dot) as the string '3e-4'; users write it that way in YAML and in --set
    run = load_config(write(tmp_path, "env: {env_id: PickCube-v1}\nlearning_rate: 3e-4\n"), Run, ["episodes=2"])
    assert run.learning_rate == pytest.approx(3e-4)
    run = load_config(write(tmp_path, "env: {env_id: PickCube-v1}\n"), Run, ["learning_rate=1E-5"])
    assert run.learning_rate == pytest.approx(1e-5)
    with pytest.raises(ConfigError, match="key 'learning_rate': expected float, got str 'fast'"):
        load_config(write(tmp_path, "env: {env_id: PickCube-v1}\nlearning_rate: fast\n"), Run)


BROKEN = [
    ("env: {env_id: PickCube-v1}\nepisodez: 3\n", "unknown key 'episodez' (did you mean 'episodes'?)"),
    ("env: {env_id: PickCube-v1, camras: {}}\n", "unknown key 'env.camras' (did you mean 'cameras'?)"),
    ("env: {env_id: PickCube-v1}\nepisodes: ten\n", "key 'episodes': expected int, got str 'ten'"),
    ("env: {env_id: PickCube-v1}\nepisodes: 2.5\n", "key 'episodes': expected int, got float 2.5"),
    ("env: {env_id: PickCube-v1}\nrecord: 'yes'\n", "key 'record': expected bool, got str 'yes'"),
    ("env: {env_id: PickCube-v1}\nepisodes: true\n", "key 'episodes': expected int, got bool True"),
    ("episodes: 3\n", "missing required key 'env'"),
    ("env: {}\n", "missing required key 'env.env_id'"),
    ("env: {env_id: PickCube-v1, control_mode: joints}\n", "key 'env.control_mode': expected one of"),
    ("env: {env_id: PickCube-v1, cameras: {base_camera: {width: wide}}}\n", "key 'env.cameras.base_camera.width'"),
    ("env: {env_id: PickCube-v1}\nseeds: [1, two]\n", "key 'seeds[1]': expected int, got str 'two'"),
    ("env: {env_id: PickCube-v1}\nimage_size: [1, 2, 3]\n", "key 'image_size': expected a list of 2 items, got 3"),
    ("env: {env_id: PickCube-v1, max_episode_steps: 0}\n", "key 'env': max_episode_steps must be positive"),
    ("env: {env_id: PickCube-v1, max_episode_steps: null}\nenv_id: x\n", "unknown key 'env_id'"),
    ("env: PickCube-v1\n", "key 'env': expected a mapping for Env, got str"),
    ("- just\n- a list\n", "key '<top level>': expected a mapping for Run, got list"),
    ("env: {env_id: PickCube-v1\n", "invalid YAML at line"),
    ("env:\n  env_id: a\n    bad: indent\n", "invalid YAML at line 3"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, Run)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml", Run)


def test_bad_override(tmp_path):
    path = write(tmp_path, "env: {env_id: PickCube-v1}\n")
    with pytest.raises(ConfigError, match="is not of the form key=value"):
        load_config(path, Run, overrides=["episodes"])


@dataclass
class Launch:
    """A config naming other config files (as a PPO config names its reward backend)."""

    env: ConfigFile[Env] = config_file(Env)
    env_overrides: list[str] = field(default_factory=list)
    camera: ConfigFile[Camera] | None = config_file(Camera, None)
    other_env: ConfigFile[Env] = config_file(Env, overrides="env_overrides")
    shipped: ConfigFile[Camera] = config_file(Camera, "nowhere/camera.yaml")


def test_a_named_config_file_is_read_with_the_config_naming_it(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("env_id: PickCube-v1\n")
    outer = tmp_path / "launch.yaml"
    outer.write_text(f"env: {env}\nother_env: {env}\nenv_overrides: [env_id=PushCube-v1]\n")
    launch = load_config(outer, Launch)
    assert launch.env.config == Env(env_id="PickCube-v1") and launch.env.path == str(env)
    assert launch.other_env.config.env_id == "PushCube-v1"  # the sibling's overrides apply to that file only
    assert launch.camera is None
    # what a run records of its config stays the path as written
    assert config_to_dict(launch) == {"env": str(env), "env_overrides": ["env_id=PushCube-v1"], "camera": None,
                                      "other_env": str(env), "shipped": "nowhere/camera.yaml"}
    assert str(launch.env) == str(env) and pathlib.Path(launch.env) == env
    assert not load_config(None, Launch).env  # nothing named: for the holder's own check
    with pytest.raises(ConfigError, match="nowhere/camera.yaml: config file not found"):
        launch.shipped.config  # a default path is read where it is used: a config not using it does not need it


@pytest.mark.parametrize(
    ("nested", "expected"),
    [
        ("env_id: PickCube-v1\nepisodes: 3\n", "{nested}: unknown key 'episodes'"),
        ("env_id: PickCube-v1\ncontrol_mode: joints\n", "{nested}: key 'control_mode': expected one of"),
        (None, "{nested}: config file not found"),
    ],
)
def test_a_broken_named_file_fails_when_the_config_naming_it_loads(tmp_path, nested, expected):
    path = tmp_path / "env.yaml"
    if nested is not None:
        path.write_text(nested)
    with pytest.raises(ConfigError) as info:
        load_config(None, Launch, [f"env={path}"])
    assert "\n" not in str(info.value) and str(info.value).startswith(expected.format(nested=path))


@pytest.mark.parametrize(
    ("override", "expected"),
    [("env=3", "key 'env': expected the path of a config file, got int 3"),
     ("env=null", "key 'env': must not be null"),
     ("camera=[a]", "key 'camera': expected the path of a config file, got list")],
)
def test_a_named_file_key_takes_a_path(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, Launch, [override])


def test_a_config_file_built_in_code_reads_its_file_on_first_use(tmp_path):
    path = tmp_path / "camera.yaml"
    path.write_text("width: 32\n")
    camera = ConfigFile(str(path), Camera, overrides=["height=8"])
    assert camera.config == Camera(width=32, height=8)
    with pytest.raises(ValueError, match="no config file is named"):
        ConfigFile("", Camera).config
