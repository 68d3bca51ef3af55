"""Write colour (+ depth) frames into a RealSense .bag through pyrealsense2's own software device and recorder.

The result plays back through the real `rs.pipeline` exactly like a recording
of a camera (`CameraConfig.playback_file`): this is how the tests and a dry run
of `robot-check` exercise the RealSense path without hardware.
"""

from __future__ import annotations

import gc
import pathlib
import time
from collections.abc import Sequence

import numpy as np


def write_bag(
    path: str | pathlib.Path,
    color: Sequence[np.ndarray],
    depth: Sequence[np.ndarray] | None = None,
    *,
    fps: int = 30,
    serial_number: str = "000000000000",
    depth_units: float = 0.001,
    paced: bool = True,
) -> pathlib.Path:
    """Record `color` frames ((H, W, 3) uint8) and optional `depth` frames ((H, W) uint16) as a .bag."""
    import pyrealsense2 as rs

    path = pathlib.Path(path)
    if not color:
        raise ValueError("write_bag needs at least one colour frame")
    height, width = color[0].shape[:2]
    if depth is not None and len(depth) != len(color):
        raise ValueError(f"{len(color)} colour frames but {len(depth)} depth frames")

    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = width, height
    intrinsics.fx = intrinsics.fy = float(width)
    intrinsics.ppx, intrinsics.ppy = width / 2, height / 2
    intrinsics.model = rs.distortion.none

    def stream(kind: object, uid: int, bpp: int, fmt: object) -> object:
        s = rs.video_stream()
        s.type, s.index, s.uid = kind, 0, uid
        s.width, s.height, s.fps, s.bpp, s.fmt, s.intrinsics = width, height, fps, bpp, fmt, intrinsics
        return s

    device = rs.software_device()
    device.register_info(rs.camera_info.serial_number, serial_number)
    device.register_info(rs.camera_info.name, "software RealSense")
    color_sensor = device.add_sensor("RGB Camera")
    color_profile = color_sensor.add_video_stream(stream(rs.stream.color, 0, 3, rs.format.rgb8))
    sources = [(color_sensor, color_profile, 3, color)]
    if depth is not None:
        depth_sensor = device.add_sensor("Stereo Module")
        depth_profile = depth_sensor.add_video_stream(stream(rs.stream.depth, 1, 2, rs.format.z16))
        depth_sensor.add_read_only_option(rs.option.depth_units, depth_units)
        # Identity extrinsics: rs.align needs to know where depth sits relative to colour.
        extrinsics = rs.extrinsics()
        extrinsics.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        extrinsics.translation = [0.0, 0.0, 0.0]
        depth_profile.register_extrinsics_to(color_profile, extrinsics)
        sources.append((depth_sensor, depth_profile, 2, depth))

    recorder = rs.recorder(str(path), device)
    sensors = recorder.query_sensors()  # the recording wrappers of the software sensors, in the same order
    for sensor, (_, profile, _, _) in zip(sensors, sources):
        sensor.open(profile)
        sensor.start(lambda frame: None)
    start = time.perf_counter()
    for i in range(len(color)):
        if paced:
            # The recorder stamps frames with their arrival time: injected at `fps`, the bag replays in
            # real time like a live camera (injected at once, it would last a few milliseconds).
            time.sleep(max(0.0, start + i / fps - time.perf_counter()))
        for software_sensor, profile, bpp, frames in sources:
            pixels = np.ascontiguousarray(frames[i])
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp, frame.stride = pixels, bpp, width * bpp
            frame.timestamp = i * 1000.0 / fps
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.frame_number = i
            frame.profile = profile.as_video_stream_profile()
            software_sensor.on_video_frame(frame)
    for sensor in sensors:
        sensor.stop()
        sensor.close()
    # The bag is indexed and closed only when the recorder and every handle onto it are gone.
    del sensors, sensor, recorder
    gc.collect()
    return path
