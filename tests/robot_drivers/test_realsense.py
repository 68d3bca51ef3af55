"""The RealSense path through pyrealsense2 itself: frames injected by a software device, recorded to a .bag
by rs.recorder, and played back through the real rs.pipeline."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from robot_drivers.cameras import CameraConfig, RealSenseCamera, make_camera
from robot_drivers.errors import CameraFault, RobotError

from .conftest import FRAMES, H, SERIAL, W, realsense_config


def read_values(camera: RealSenseCamera, n: int) -> list[tuple[int, int]]:
    out = []
    for _ in range(n):
        image = camera.read()
        depth = camera.read_depth()
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert depth is not None and depth.shape == (H, W) and depth.dtype == np.uint16
        assert (image == image[0, 0, 0]).all() and (depth == depth[0, 0]).all()
        out.append((int(image[0, 0, 0]), int(depth[0, 0]) - 1000))
    return out


def test_colour_and_depth_play_back_through_the_pipeline(bag_file):
    camera = make_camera("front", realsense_config(bag_file))
    assert isinstance(camera, RealSenseCamera)
    camera.connect()
    assert camera.serial_number == SERIAL
    values = read_values(camera, FRAMES)
    camera.disconnect()
    # The recording plays in real time, looped: reads move forward through it (a slow reader skips some;
    # where the loop wraps, one frameset may repeat the last colour frame).
    steps = [(b[0] - a[0]) % FRAMES for a, b in zip(values, values[1:])]
    assert all(0 <= s <= 10 for s in steps) and steps.count(0) <= 2, str(values)
    assert len({c for c, _ in values}) >= FRAMES - 12
    matched = sum(c == d for c, d in values)
    assert matched >= len(values) - 2  # colour and depth of the same frameset
    assert camera.frames_read == FRAMES and camera.reconnects == 0


def test_wrong_serial_number_is_refused(bag_file):
    camera = make_camera("front", realsense_config(bag_file, serial_number="999"))
    with pytest.raises(RobotError, match="has serial number 123456789012, not 999"):
        camera.connect()


def test_live_serial_that_is_not_plugged_in_lists_what_is():
    camera = make_camera("front", CameraConfig(width=W, height=H, fps=30, serial_number="000000000001"))
    with pytest.raises(RobotError, match=r"no RealSense with this serial number is connected \(connected: "):
        camera.connect()


def drop_out(camera: RealSenseCamera) -> None:
    """The stream stops under the reader, as when a camera's USB link drops: its pipeline stops delivering."""
    camera._pipeline.stop()


def test_dropout_is_survived_by_reconnecting(bag_file):
    camera = make_camera("front", realsense_config(bag_file))
    camera.connect()
    read_values(camera, 5)
    drop_out(camera)
    values = read_values(camera, 4)
    assert camera.reconnects == 1
    colours = [c for c, _ in values]
    assert colours[0] < 5  # the stream started again from the recording's start
    assert sum(c == d for c, d in values) >= 3
    camera.disconnect()


def test_lasting_dropout_becomes_a_camera_fault(bag_file, tmp_path):
    bag = pathlib.Path(shutil.copy(bag_file, tmp_path / "unplugged.bag"))
    camera = make_camera("front", realsense_config(bag))
    camera.connect()
    read_values(camera, 2)
    drop_out(camera)
    bag.unlink()  # the device is gone: every reconnection fails
    with pytest.raises(CameraFault, match="camera 'front'.*no frame after 2 reconnection attempt") as info:
        camera.read()
    assert info.value.component == "camera:front"
    assert not camera.is_connected


def test_realsense_config_needs_a_device_and_a_stream_format():
    with pytest.raises(ValueError, match="needs serial_number"):
        CameraConfig(width=W, height=H, fps=30)
    with pytest.raises(ValueError, match="needs width, height and fps"):
        CameraConfig(serial_number="1")
    with pytest.raises(ValueError, match="unknown camera type 'webcam'"):
        CameraConfig(type="webcam")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # LeRobot's read thread dies loudly
def test_lerobot_opencv_camera_reads_frames_then_faults_when_they_stop(tmp_path):
    """LeRobot's OpenCVCamera on a video file: its read thread decodes the file (10000 frames, ~0.6 s here)
    as if it were a live camera; once the file ends the thread stops and reading becomes a CameraFault."""
    import cv2

    path = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H))
    for i in range(10000):
        writer.write(np.full((H, W, 3), i * 250 // 10000, np.uint8))  # brightness ramps up over the file
    writer.release()
    config = CameraConfig(
        type="opencv", options={"index_or_path": str(path), "warmup_s": 0}, read_timeout_ms=200,
        reconnect_attempts=1, reconnect_backoff_s=0.01,
    )
    camera = make_camera("wrist", config)
    from lerobot.cameras.opencv import OpenCVCamera

    assert isinstance(camera.camera, OpenCVCamera)
    camera.connect()
    frames = [camera.read() for _ in range(5)]
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    values = [int(f[0, 0, 0]) for f in frames]
    assert values == sorted(values)  # frames come in the file's order
    assert camera.frames_read == 5 and camera.read_depth() is None
    with pytest.raises(CameraFault, match="camera 'wrist'") as info:
        for _ in range(10000):
            camera.read()
    assert info.value.component == "camera:wrist"
    camera.disconnect()
