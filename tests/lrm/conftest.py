"""A tiny random Qwen3-VL checkpoint with three LoRA adapters, built once per test session."""

from __future__ import annotations

import pathlib

import pytest

from tests.support.tiny_reward_models import TinyModelPaths, build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_qwen3vl(tmp_path_factory: pytest.TempPathFactory) -> TinyModelPaths:
    return build_tiny_checkpoint(pathlib.Path(tmp_path_factory.mktemp("tiny_qwen3vl")))
