"""Real hardware behind the Env interface of sim/: LeRobot arms, LeRobot and RealSense cameras, safety limits.

- `arms/`: ArmConfig -> `make_arm` -> Arm (a LeRobot Robot as a joint vector; a simulated motor bus for dry runs)
- `cameras/`: CameraConfig -> `make_camera` -> RealSenseCamera (pyrealsense2 directly) or LeRobotCamera;
  `realsense_bag.write_bag` records frames to a .bag through pyrealsense2's software device (tests, dry runs)
- `safety.py`: pure limits (bounds, change per tick, joint limits, watchdog, e-stop, time cap, reset gate)
- `timing.py`: the fixed control rate and the achieved-rate statistics
- `env.py`: RobotEnvConfig -> `make_robot_env` -> RobotEnv
- `check.py`: what `lrm-robot robot-check` measures (rate, read times, frame and depth statistics)
- `errors.py`: RobotError (set-up, exit 2) and RobotFault (mid-episode: commit the episode as aborted)
"""
