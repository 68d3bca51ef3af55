"""A simulated motor bus that stands in for LeRobot's Feetech/Dynamixel buses under LeRobot's own Robot classes.

Where it plugs in: LeRobot's follower classes (SO-100/101, Koch, ...) build
their bus in `__init__` from a bus class imported into their module
(`FeetechMotorsBus`, `DynamixelMotorsBus`). `simulated_buses()` swaps those
names for `SimulatedMotorsBus` while the robot is built, so `connect`,
`configure`, `get_observation`, `send_action` and `disconnect` are LeRobot's
code, talking to this bus through the same `MotorsBusBase` API (positions in
the bus's normalised units, as the real buses return them after calibration).
The layer below, raw register packets over a serial port, is not simulated:
the vendor SDKs (feetech-servo-sdk, dynamixel-sdk) and pyserial are optional
LeRobot extras.

The simulated device behaves like the servos where it matters to the layers
above: goals are clamped to the position-limit registers, joints move toward
their goals at a finite speed, every bus transaction takes time, and it can
be unplugged (now, or after N more transactions), after which every call
raises `ConnectionError` as LeRobot's buses do.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from lerobot.motors import Motor, MotorCalibration, MotorNormMode
from lerobot.motors.motors_bus import MotorsBusBase

from robot_drivers.arms.config import SimulatedBusConfig

_DEFAULT_LIMITS = {
    MotorNormMode.DEGREES: (-150.0, 150.0),
    MotorNormMode.RANGE_0_100: (0.0, 100.0),
    MotorNormMode.RANGE_M100_100: (-100.0, 100.0),
}


class SimulatedArmDevice:
    """The servos on the other side of the bus; shared by every handle onto the same bus."""

    def __init__(self, motors: dict[str, Motor], config: SimulatedBusConfig) -> None:
        unknown = sorted(m for m in {*config.position_limits, *config.start_positions} if m not in motors)
        if unknown:
            raise ValueError(f"simulated bus: no motor named {unknown[0]!r}; motors are {', '.join(motors)}")
        self.config = config
        self.limits = {
            name: tuple(config.position_limits.get(name, _DEFAULT_LIMITS[motor.norm_mode])) for name, motor in motors.items()
        }
        self.position = {
            name: self._clamp(name, config.start_positions.get(name, sum(self.limits[name]) / 2)) for name in motors
        }
        self.goal = dict(self.position)
        self.torque = dict.fromkeys(motors, False)
        self.registers: dict[str, dict[str, Any]] = {name: {} for name in motors}
        self.transactions = 0
        self.goal_log: list[dict[str, float]] = []  # every goal write as the servos accepted it (clamped)
        self._unplugged = False
        self._unplug_after: int | None = None
        self._lock = threading.Lock()
        self._last_update = time.monotonic()

    # -- failure injection ------------------------------------------------------

    def unplug(self, after_transactions: int = 0) -> None:
        """Stop answering now, or after that many more transactions."""
        with self._lock:
            if after_transactions <= 0:
                self._unplugged = True
            else:
                self._unplug_after = self.transactions + after_transactions

    def replug(self) -> None:
        with self._lock:
            self._unplugged = False
            self._unplug_after = None

    @property
    def unplugged(self) -> bool:
        return self._unplugged

    # -- what a bus transaction does ------------------------------------------------

    def transaction(self, what: str) -> None:
        """Every call costs `command_latency_s`; an unplugged device raises like a real bus would."""
        time.sleep(self.config.command_latency_s)
        with self._lock:
            if self._unplug_after is not None and self.transactions >= self._unplug_after:
                self._unplugged = True
            if self._unplugged:
                raise ConnectionError(f"Failed to {what}: [TxRxResult] There is no status packet!")
            self.transactions += 1
            self._advance()

    def _clamp(self, name: str, value: float) -> float:
        low, high = self.limits[name]
        return min(max(float(value), low), high)

    def _advance(self) -> None:
        """Move every torqued joint toward its goal at `max_speed` for the time since the last update."""
        now = time.monotonic()
        step = self.config.max_speed * (now - self._last_update)
        self._last_update = now
        for name, goal in self.goal.items():
            if self.torque[name]:
                delta = goal - self.position[name]
                self.position[name] += max(-step, min(step, delta))

    def write_goals(self, goals: dict[str, float]) -> None:
        with self._lock:
            accepted = {name: self._clamp(name, value) for name, value in goals.items()}
            self.goal.update(accepted)
            self.goal_log.append(accepted)

    def set_torque(self, names: list[str], enabled: bool) -> None:
        with self._lock:
            for name in names:
                self.torque[name] = enabled
                if enabled:  # a servo switched on holds where it is
                    self.goal[name] = self.position[name]


class SimulatedMotorsBus(MotorsBusBase):
    """`MotorsBusBase` over a `SimulatedArmDevice`; constructed with the signature of LeRobot's serial buses."""

    sim_config = SimulatedBusConfig()
    _devices: dict[str, SimulatedArmDevice] = {}  # port -> device: reconnecting finds the same arm
    _devices_lock = threading.Lock()

    def __init__(
        self,
        port: str,
        motors: dict[str, Motor],
        calibration: dict[str, MotorCalibration] | None = None,
        **_protocol_options: Any,
    ) -> None:
        super().__init__(port, motors, calibration)
        with self._devices_lock:
            device = self._devices.get(port)
            if device is None or set(device.position) != set(motors):
                device = self._devices[port] = SimulatedArmDevice(motors, self.sim_config)
        self.device = device
        self._connected = False

    @classmethod
    def forget_devices(cls) -> None:
        with cls._devices_lock:
            cls._devices.clear()

    # -- MotorsBusBase ---------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, handshake: bool = True) -> None:
        if handshake:
            self.device.transaction(f"ping the motors on port '{self.port}'")
        self._connected = True

    def disconnect(self, disable_torque: bool = True) -> None:
        if disable_torque and not self.device.unplugged:
            self.disable_torque()
        self._connected = False

    def _names(self, motors: str | list[str] | None) -> list[str]:
        if motors is None:
            return list(self.motors)
        names = [motors] if isinstance(motors, str) else list(motors)
        unknown = [n for n in names if n not in self.motors]
        if unknown:
            raise KeyError(f"no motor named {unknown[0]!r} on {self.port}")
        return names

    def _check_connected(self) -> None:
        if not self._connected:
            from lerobot.utils.errors import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"simulated bus on {self.port} is not connected")

    def read(self, data_name: str, motor: str) -> Any:
        return self.sync_read(data_name, motor)[motor]

    def write(self, data_name: str, motor: str, value: Any) -> None:
        self.sync_write(data_name, {motor: value})

    def sync_read(self, data_name: str, motors: str | list[str] | None = None, **_retry: Any) -> dict[str, Any]:
        self._check_connected()
        names = self._names(motors)
        self.device.transaction(f"sync read '{data_name}' on ids={names}")
        if data_name == "Present_Position":
            return {n: self.device.position[n] for n in names}
        if data_name == "Goal_Position":
            return {n: self.device.goal[n] for n in names}
        if data_name == "Torque_Enable":
            return {n: int(self.device.torque[n]) for n in names}
        return {n: self.device.registers[n].get(data_name, 0) for n in names}

    def sync_write(self, data_name: str, values: dict[str, Any], **_retry: Any) -> None:
        self._check_connected()
        self._names(list(values))
        self.device.transaction(f"sync write '{data_name}'")
        if data_name == "Goal_Position":
            self.device.write_goals({n: float(v) for n, v in values.items()})
        elif data_name == "Torque_Enable":
            for name, value in values.items():
                self.device.set_torque([name], bool(value))
        else:
            for name, value in values.items():
                self.device.registers[name][data_name] = value

    def enable_torque(self, motors: str | list[str] | None = None, num_retry: int = 0) -> None:
        self._check_connected()
        self.device.transaction("enable torque")
        self.device.set_torque(self._names(motors), True)

    def disable_torque(self, motors: str | list[str] | None = None, num_retry: int = 0) -> None:
        self._check_connected()
        self.device.transaction("disable torque")
        self.device.set_torque(self._names(motors), False)

    def read_calibration(self) -> dict[str, MotorCalibration]:
        return dict(self.calibration)

    def write_calibration(self, calibration_dict: dict[str, MotorCalibration], cache: bool = True) -> None:
        if cache:
            self.calibration = dict(calibration_dict)

    # -- what LeRobot's followers use beyond MotorsBusBase ----------------------------

    @property
    def is_calibrated(self) -> bool:
        # Positions are simulated in normalised units already: there is no encoder offset to calibrate.
        return True

    def configure_motors(self, *args: Any, **kwargs: Any) -> None:
        self._check_connected()
        self.device.transaction("configure motors")

    @contextlib.contextmanager
    def torque_disabled(self, motors: str | list[str] | None = None) -> Iterator[None]:
        self.disable_torque(motors)
        try:
            yield
        finally:
            self.enable_torque(motors)


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def simulated_buses(robot_config: Any, sim_config: SimulatedBusConfig) -> Iterator[None]:
    """While active, the LeRobot robot package for `robot_config` builds `SimulatedMotorsBus`es.

    Every module of the robot's package that imported a `MotorsBusBase`
    subclass under some name gets that name rebound to a simulated bus class
    carrying `sim_config`; the names are restored afterwards.
    """
    package = type(robot_config).__module__.rsplit(".", 1)[0]
    importlib.import_module(package)  # imports the robot class module and, with it, its bus class
    bus_class = type("SimulatedMotorsBus", (SimulatedMotorsBus,), {"sim_config": sim_config, "__module__": __name__})
    with _PATCH_LOCK:
        saved: list[tuple[Any, str, Any]] = []
        for module_name, module in list(sys.modules.items()):
            if module is None or not (module_name == package or module_name.startswith(package + ".")):
                continue
            for attr, value in list(vars(module).items()):
                if isinstance(value, type) and issubclass(value, MotorsBusBase) and not issubclass(value, SimulatedMotorsBus):
                    saved.append((module, attr, value))
                    setattr(module, attr, bus_class)
        if not saved:
            raise ValueError(f"{package} builds no motor bus that could be simulated")
        try:
            yield
        finally:
            for module, attr, value in saved:
                setattr(module, attr, value)
