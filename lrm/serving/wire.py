"""The wire format of reward serving: RewardRequests and Rewards as JSON, frames as bytes, never pickles.

A pickle runs code when it is read, so a server that unpickles what a network
client sends runs whatever that client wants; JSON cannot. A frame travels as
its raw bytes with its shape and dtype (`{"shape": [H, W, 3], "dtype": "uint8",
"data": base64}`; cheapest to make and read) or as a PNG (`{"png": base64}`;
smaller on a slow link). Only uint8 is accepted, since every backend reads
uint8 HxWx3 frames (lrm.types.validate_image).

Sizes are limited before anything is decoded (`WireLimits`): a client that
sends a 100-megapixel frame or ten thousand requests gets a one-line
`WireError` naming the request and the frame, and the server goes on serving
everyone else.

    {"requests": [{"modality": "progress", "task": "pick the cube",
                   "frames": {"current": FRAME, "first": FRAME},
                   "env_id": 3, "request_id": 17, "previous_value": 0.4,
                   "video": FRAME (T, H, W, 3), "video_fps": 2.0, "oracle": {"dense_reward": 0.3}}]}
    {"rewards": [{"value": 0.5, "raw_text": "...", "probs": {...}, "parsed_ok": true, "failed": false}]}
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from lrm.types import Reward, RewardRequest

FrameEncoding = Literal["raw", "png"]

__all__ = ["FrameEncoding", "WireError", "WireLimits", "decode_requests", "decode_rewards", "encode_array",
           "encode_requests", "encode_rewards"]


class WireError(ValueError):
    """A request body that cannot be read (bad JSON, bad frame, over a limit); one line."""


@dataclasses.dataclass(frozen=True)
class WireLimits:
    """What one call may carry; a server refuses more before decoding it."""

    max_requests: int = 256
    max_frame_pixels: int = 4096 * 4096  # a 16-megapixel camera frame
    max_video_frames: int = 64
    max_body_bytes: int = 256 * 1024 * 1024


def encode_array(array: np.ndarray, encoding: FrameEncoding = "raw") -> dict[str, Any]:
    """One uint8 frame (H, W, 3) or video (T, H, W, 3) as JSON; a video is sent raw (PNG holds one image)."""
    array = np.ascontiguousarray(array)
    if encoding == "png" and array.ndim == 3:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # level 1: fast, most of the gain
        return {"png": base64.b64encode(buffer.getvalue()).decode("ascii")}
    return {"shape": list(array.shape), "dtype": str(array.dtype), "data": base64.b64encode(array.tobytes()).decode("ascii")}


def encode_requests(requests: Sequence[RewardRequest], encoding: FrameEncoding = "raw") -> bytes:
    """The JSON body of a /score call."""
    items = []
    for request in requests:
        item: dict[str, Any] = {
            "modality": request.modality,
            "task": request.task,
            "frames": {key: encode_array(image, encoding) for key, image in request.frames.items()},
        }
        for name in ("env_id", "request_id", "previous_value", "video_fps"):
            value = getattr(request, name)
            if value is not None:
                item[name] = value.item() if isinstance(value, np.generic) else value
        if request.oracle is not None:
            item["oracle"] = {k: float(v) for k, v in request.oracle.items()}
        if request.video is not None:
            item["video"] = encode_array(request.video, "raw")
        items.append(item)
    return json.dumps({"requests": items}).encode()


def decode_requests(body: bytes, limits: WireLimits = WireLimits()) -> list[RewardRequest]:
    """A /score body back into RewardRequests; WireError (one line) for anything malformed or too large."""
    if len(body) > limits.max_body_bytes:
        raise WireError(f"body of {len(body)} bytes is over the limit of {limits.max_body_bytes}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"body is not JSON: {exc}") from None
    items = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise WireError('body must be a JSON object {"requests": [...]}')
    if len(items) > limits.max_requests:
        raise WireError(f"{len(items)} requests in one call, the limit is {limits.max_requests}")
    return [_decode_request(item, i, limits) for i, item in enumerate(items)]


def _decode_request(item: Any, index: int, limits: WireLimits) -> RewardRequest:
    where = f"request {index}"
    if not isinstance(item, dict):
        raise WireError(f"{where}: must be an object, got {type(item).__name__}")
    unknown = sorted(set(item) - {"modality", "task", "frames", "env_id", "request_id", "previous_value",
                                  "video_fps", "oracle", "video"})
    if unknown:
        raise WireError(f"{where}: unknown field {unknown[0]!r}")
    frames = item.get("frames")
    if not isinstance(frames, dict):
        raise WireError(f"{where}: frames must be an object of frame name -> frame")
    decoded = {str(key): _decode_array(value, f"{where}: frame {key!r}", 3, limits) for key, value in frames.items()}
    video = item.get("video")
    previous = item.get("previous_value")
    if previous is not None and (not isinstance(previous, (int, float)) or isinstance(previous, bool)
                                 or not math.isfinite(previous)):
        raise WireError(f"{where}: previous_value must be a finite number or null, got {previous!r}")
    oracle = item.get("oracle")
    if oracle is not None and not (isinstance(oracle, dict)
                                   and all(isinstance(v, (int, float)) for v in oracle.values())):
        raise WireError(f"{where}: oracle must be an object of name -> number")
    for name in ("env_id", "request_id"):
        if item.get(name) is not None and not isinstance(item[name], (int, str)):
            raise WireError(f"{where}: {name} must be an integer or a string")
    return RewardRequest(
        modality=item.get("modality"),
        frames=decoded,
        task=item.get("task"),
        env_id=item.get("env_id"),
        request_id=item.get("request_id"),
        previous_value=None if previous is None else float(previous),
        video=None if video is None else _decode_array(video, f"{where}: video", 4, limits),
        oracle=oracle,
        video_fps=item.get("video_fps"),
    )


def _decode_array(value: Any, where: str, ndim: int, limits: WireLimits) -> np.ndarray:
    if not isinstance(value, dict):
        raise WireError(f"{where}: must be an object {{shape, dtype, data}} or {{png}}")
    if "png" in value:
        return _decode_png(value["png"], where, limits)
    shape, dtype, data = value.get("shape"), value.get("dtype"), value.get("data")
    if dtype != "uint8":
        raise WireError(f"{where}: dtype must be 'uint8', got {dtype!r}")
    if (not isinstance(shape, list) or len(shape) != ndim or not all(isinstance(n, int) and n >= 1 for n in shape)
            or shape[-1] != 3):
        layout = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
        raise WireError(f"{where}: shape must be {layout} of positive integers, got {shape!r}")
    frames = 1 if ndim == 3 else shape[0]
    if frames > limits.max_video_frames:
        raise WireError(f"{where}: {frames} frames, the limit is {limits.max_video_frames}")
    pixels = shape[-3] * shape[-2]
    if pixels > limits.max_frame_pixels:
        raise WireError(f"{where}: {shape[-3]}x{shape[-2]} is {pixels} pixels, the limit is {limits.max_frame_pixels}")
    raw = _b64(data, where)
    expected = math.prod(shape)
    if len(raw) != expected:
        raise WireError(f"{where}: {len(raw)} bytes of data for shape {shape} (needs {expected})")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()  # a writable copy: torch warns on read-only


def _decode_png(data: Any, where: str, limits: WireLimits) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    raw = _b64(data, where)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format != "PNG":
                raise WireError(f"{where}: png holds a {image.format} image")
            # checked from the header, before the pixels are decompressed (a small PNG can hold a huge image)
            width, height = image.size
            if width * height > limits.max_frame_pixels:
                raise WireError(f"{where}: {height}x{width} is {width * height} pixels, "
                                f"the limit is {limits.max_frame_pixels}")
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise WireError(f"{where}: not a readable PNG ({exc})") from None


def _b64(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise WireError(f"{where}: data must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{where}: data is not valid base64") from None


def encode_rewards(rewards: Sequence[Reward]) -> dict[str, Any]:
    """The JSON answer of a /score call."""
    return {"rewards": [dataclasses.asdict(r) for r in rewards]}


def decode_rewards(data: Mapping[str, Any], count: int) -> list[Reward]:
    """A /score answer back into Rewards; WireError when it is not `count` well-formed rewards."""
    items = data.get("rewards") if isinstance(data, Mapping) else None
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise WireError(f"server answered {got} rewards for {count} requests")
    rewards = []
    for i, item in enumerate(items):
        try:
            rewards.append(Reward(value=float(item["value"]), raw_text=str(item["raw_text"]),
                                  probs=item.get("probs"), parsed_ok=bool(item.get("parsed_ok", True)),
                                  failed=bool(item.get("failed", False))))
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"reward {i} is malformed: {exc}") from None
    return rewards
