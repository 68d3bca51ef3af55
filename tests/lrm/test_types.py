"""Requests are validated up front with one-line errors; frames are resized to the configured size."""

from __future__ import annotations

import numpy as np
import pytest

from lrm.types import (
    RequestError,
    Reward,
    RewardModel,
    RewardRequest,
    prepare_frames,
    resize_image,
    validate_request,
)


def _frame(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_valid_requests_pass() -> None:
    validate_request(RewardRequest("completion", {"current": _frame()}, "pick the cube"), 0)
    validate_request(RewardRequest("progress", {"current": _frame(), "first": _frame()}, "t"), 1)
    validate_request(RewardRequest("contrastive", {"current": _frame(), "previous": _frame()}, "t"), 2)
    validate_request(
        RewardRequest("contrastive", {"current": _frame(), "previous": _frame(), "first": _frame()}, "t"), 3
    )


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (RewardRequest("bogus", {"current": _frame()}, "t"), "unknown modality"),  # type: ignore[arg-type]
        (RewardRequest("progress", {"current": _frame()}, "t"), r"needs frame\(s\) \['first'\]"),
        (RewardRequest("completion", {"current": _frame(), "first": _frame()}, "t"), "does not use"),
        (RewardRequest("completion", {"current": _frame().astype(np.float32)}, "t"), r"float32 with shape \(48, 64, 3\)"),
        (RewardRequest("completion", {"current": np.zeros((48, 64), np.uint8)}, "t"), r"shape \(48, 64\)"),
        (RewardRequest("completion", {"current": np.zeros((48, 64, 4), np.uint8)}, "t"), r"shape \(48, 64, 4\)"),
        (RewardRequest("completion", {"current": [[1, 2, 3]]}, "t"), "got list"),  # type: ignore[dict-item]
        (RewardRequest("completion", {"current": _frame()}, "  "), "task"),
    ],
)
def test_bad_requests_are_one_line_errors_naming_the_index(request_: RewardRequest, match: str) -> None:
    with pytest.raises(RequestError, match=match) as info:
        validate_request(request_, 7)
    message = str(info.value)
    assert message.startswith("request 7:")
    assert "\n" not in message


def test_resize_to_configured_size() -> None:
    frame = _frame(48, 64)
    assert resize_image(frame, None) is frame
    out = resize_image(frame, (32, 40))
    assert out.shape == (32, 40, 3) and out.dtype == np.uint8
    frames = prepare_frames(RewardRequest("progress", {"current": frame, "first": frame}, "t"), 0, (64, 64))
    assert {k: v.shape for k, v in frames.items()} == {"current": (64, 64, 3), "first": (64, 64, 3)}


def test_protocol_is_structural() -> None:
    class Constant:
        def score(self, requests):  # noqa: ANN001, ANN202
            return [Reward(value=1.0, raw_text="") for _ in requests]

    assert isinstance(Constant(), RewardModel)
