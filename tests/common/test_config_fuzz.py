"""The config loader under hostile input: every shipped config, mutated at every key, and bytes at random.

Whatever the input, the loader returns a config or raises ConfigError with one line that starts
with the file's name; never another exception (the CLI would print a traceback for it). The CLI
side (exit code 2, nothing but that line on stderr) is tests/app/test_bad_inputs.py.
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
import random
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from common.config import ConfigError, config_to_dict, load_config
from tests.support.shipped_configs import ROOT, SHIPPED, entry, shipped_files

FILES = shipped_files()


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # shipped configs name other shipped files relative to the repository


def _load(path: pathlib.Path, original: pathlib.Path) -> Any:
    shipped = entry(original)
    return load_config(path, shipped.load_class(), list(shipped.overrides))


def _refused(path: pathlib.Path, original: pathlib.Path) -> str:
    """The ConfigError line of loading `path` (a mutation of the shipped `original`)."""
    with pytest.raises(ConfigError) as info:
        _load(path, original)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path of the data, parents before children."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _get(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _replaced(data: Any, path: tuple, value: Any) -> Any:
    out = copy.deepcopy(data)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _data(original: pathlib.Path) -> Any:
    return yaml.safe_load(original.read_text())


def _write(tmp_path: pathlib.Path, original: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path = tmp_path / original.name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_every_shipped_config_is_listed_and_loads():
    assert len(FILES) >= 30
    for original in FILES:
        entry(original)  # exactly one table entry
        _load(original, original)
    assert all(any(entry(f) is s for f in FILES) for s in SHIPPED), "an entry of SHIPPED matches no file"


@pytest.mark.parametrize("original", FILES, ids=str)
def test_a_wrong_type_at_every_key_is_one_line_naming_the_key(tmp_path, original):
    data = _data(original)
    overridden = {o.split("=", 1)[0] for o in entry(original).overrides}
    for path in _paths(data):
        if _dotted(path) in overridden:
            continue
        value = _get(data, path)
        # a value of another kind than the one written: a scalar for a mapping, a mapping for anything else
        # (a string is no wrong type where a path is also taken), text for a flag
        wrong = 12345 if isinstance(value, dict) else "maybe" if isinstance(value, bool) else {"not": "this"}
        message = _refused(_write(tmp_path, original, yaml.safe_dump(_replaced(data, path, wrong))), original)
        key = path[-1] if isinstance(path[-1], str) else _dotted(path).rsplit(".", 1)[-1]
        assert str(key) in message, (path, message)


@pytest.mark.parametrize("original", FILES, ids=str)
def test_non_finite_and_huge_numbers_at_every_number_are_refused(tmp_path, original):
    data = _data(original)
    numbers = [p for p in _paths(data) if type(_get(data, p)) in (int, float)]
    for path in numbers:
        for bad in (math.nan, math.inf, -math.inf):
            message = _refused(_write(tmp_path, original, yaml.safe_dump(_replaced(data, path, bad))), original)
            assert "must be a finite number" in message or "expected int" in message, (path, message)
        if type(_get(data, path)) is int:
            for huge in (10**23, -(10**23)):
                written = _write(tmp_path, original, yaml.safe_dump(_replaced(data, path, huge)))
                try:
                    loaded = config_to_dict(_load(written, original))
                except ConfigError as exc:
                    assert "\n" not in str(exc) and "must be" in str(exc), (path, str(exc))
                else:  # only a float field without bounds takes it (an int written where a float is meant)
                    assert type(_get(loaded, path)) is float, (path, "an int field took", huge)


def _flow(node: Any, repeat: int) -> str:
    """`node` as flow YAML where the mapping with id `repeat` gives its first key twice."""
    if isinstance(node, dict):
        items = list(node.items())
        if id(node) == repeat:
            items.append(items[0])
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_flow(v, repeat)}" for k, v in items) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_flow(v, repeat) for v in node) + "]"
    return json.dumps(node)


@pytest.mark.parametrize("original", FILES, ids=str)
def test_a_key_given_twice_in_any_mapping_is_refused(tmp_path, original):
    data = _data(original)
    mappings = [data] + [v for p in _paths(data) if isinstance(v := _get(data, p), dict) and v]
    for mapping in mappings:
        message = _refused(_write(tmp_path, original, _flow(data, id(mapping))), original)
        assert f"key {next(iter(mapping))!r} is given twice" in message, message


DEEP = [
    "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
    "".join(f"{'  ' * i}k{i}:\n" for i in range(300)),  # 300 levels: indentation grows the file quadratically
    "- " * 3000 + "x\n",
]


@pytest.mark.parametrize("text", DEEP, ids=["lists", "flow-mappings", "block-mappings", "block-lists"])
def test_deep_nesting_is_refused_without_recursion_error(tmp_path, text):
    original = pathlib.Path("configs/ppo/pickcube_lite.yaml")
    message = _refused(_write(tmp_path, original, text), original)
    assert "nested more than 64 levels" in message


def test_aliases_that_expand_to_billions_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    original = pathlib.Path("configs/demos_pickcube.yaml")
    message = _refused(_write(tmp_path, original, "\n".join(lines) + "\n"), original)
    assert "more than 100000 values" in message


def test_bytes_that_are_not_utf8_name_the_byte(tmp_path):
    original = pathlib.Path("configs/improve/pickcube_cpu.yaml")
    message = _refused(_write(tmp_path, original, b"rounds: 2\n\xff\xfe\x00binary"), original)
    assert message == f"{tmp_path / original.name}: is not UTF-8 text (byte 10 is 0xff); a config is a YAML text file"


def test_a_control_character_is_named(tmp_path):
    original = pathlib.Path("configs/improve/pickcube_cpu.yaml")
    message = _refused(_write(tmp_path, original, "rounds: 2\x00\n"), original)
    assert "invalid YAML at character 9: special characters are not allowed (#x0000)" in message


def test_a_folder_or_a_huge_file_is_not_read(tmp_path):
    original = pathlib.Path("configs/improve/pickcube_cpu.yaml")
    assert "is not a file" in _refused(tmp_path, original)
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(5 * 1024 * 1024)
    assert "more than a config's" in _refused(huge, original)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_and_yaml_shaped_noise(tmp_path, seed):
    """Random input of two kinds: raw bytes, and text from YAML's own punctuation (which reaches the parser)."""
    rng = random.Random(seed)
    alphabet = "{}[]:,-&*!|>'\"#%@` \n\t.0123456789eE+abkey_" + "\u00e9\u2603"
    for i in range(60):
        original = FILES[rng.randrange(len(FILES))]
        if i % 2:
            text: str | bytes = bytes(rng.randrange(256) for _ in range(rng.randrange(400)))
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(400)))
        path = _write(tmp_path, original, text)
        try:
            _load(path, original)  # noise that is a valid, empty config is fine
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path)), str(exc)
