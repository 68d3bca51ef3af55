"""Expected failures of the simulator package: the CLI prints them as one line, exit code 2."""

from __future__ import annotations


class SimError(Exception):
    """Base class of every expected `sim` error (bad env id, no task sentence, no Vulkan driver, no solver)."""


class UnknownEnvError(SimError, ValueError):
    """An env id ManiSkill does not register."""


class MissingTaskError(SimError, ValueError):
    """A registered env id without a built-in task sentence, and none given in the config."""


class UnknownCameraError(SimError, ValueError):
    """A camera name the env does not have (the message lists those it has)."""


class VulkanSetupError(SimError, RuntimeError):
    """No Vulkan driver that SAPIEN can use was found."""
