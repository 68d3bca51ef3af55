"""`lrm-robot robot-check` on the example SO-101 config, dry-run: LeRobot's SO101Follower on the simulated
motor bus and the RealSense path on a .bag recorded through pyrealsense2's software device."""

from __future__ import annotations

import json
import pathlib

import pytest

from app.cli import main

from .conftest import FRAMES, H, SERIAL, W

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "robot" / "so101.yaml"


def dry_run(tmp_path: pathlib.Path, bag: pathlib.Path, simulated: bool = True) -> list[str]:
    return [
        "--set", f"arm.simulated={str(simulated).lower()}",
        "--set", f"arm.port=/dev/robot-check-{tmp_path.name}",
        "--set", f"arm.calibration_dir={tmp_path / 'calibration'}",
        "--set", f"cameras.front.playback_file={bag}",
        "--set", f"cameras.front.serial_number='{SERIAL}'",
        "--set", f"cameras.front.width={W}",
        "--set", f"cameras.front.height={H}",
    ]


def test_robot_check_reports_rate_joints_and_frames(tmp_path, bag_file, capsys):
    out = tmp_path / "check.json"
    code = main(["robot-check", "--config", str(CONFIG), "--seconds", "1.0", "--json", str(out), *dry_run(tmp_path, bag_file)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "arm 'lab_so101' (so101_follower, simulated bus)" in printed
    assert "camera front (RealSenseCamera)" in printed and "depth valid 100%" in printed
    assert "Hz achieved of 30 Hz" in printed
    stats = json.loads(out.read_text())
    assert 15 <= stats["rate"]["ticks"] <= 32 and 15.0 <= stats["rate"]["achieved_hz"] <= 30.5  # the machine is shared
    front = stats["cameras"]["front"]
    assert front["frames"] == stats["rate"]["ticks"] and front["shape"] == [H, W, 3]
    assert front["changing_frames"] >= front["frames"] - 3  # the recording's frames differ one from the next
    assert front["depth_valid"] == 1.0
    assert set(stats["joints"]) == {f"{j}.pos" for j in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")}
    assert stats["outside_limits"] == []
    assert FRAMES > 0


def test_robot_check_names_a_missing_camera_in_one_line(tmp_path, bag_file, capsys):
    args = dry_run(tmp_path, bag_file) + ["--set", "cameras.front.serial_number='999'"]
    code = main(["robot-check", "--config", str(CONFIG), "--seconds", "0.2", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("lrm-robot robot-check: error: RealSense camera 'front'") and "not 999" in err
    assert "\n" not in err


def test_robot_check_without_the_arms_sdk_is_a_one_line_error(tmp_path, bag_file, capsys):
    code = main(["robot-check", "--config", str(CONFIG), "--seconds", "0.2", *dry_run(tmp_path, bag_file, simulated=False)])
    err = capsys.readouterr().err.strip()
    try:
        import scservo_sdk  # noqa: F401
    except ImportError:
        assert code == 2 and "feetech-servo-sdk" in err and "\n" not in err
    else:  # pragma: no cover - with the SDK, the port does not exist here
        assert code == 2 and "could not connect" in err
