"""ManiSkill 3.0.1 emits numpy-2 and logging deprecation warnings on every step; they are not ours."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:mani_skill"))
