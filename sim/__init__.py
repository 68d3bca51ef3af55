"""ManiSkill3 environments behind the project's Env interface, and motion-planning demonstrations.

Importing this package (or `sim.maniskill_env`) does not import ManiSkill or
SAPIEN; building an env first prepares the process for them (`sim.vulkan`).
Demonstrations live in `sim.demos` (imports gymnasium and the episode store);
N envs stepped as one batch (CPU worker processes or GPU sub-scenes) in `sim.vector_env`.
"""

from sim.env import Env, Observation
from sim.errors import MissingTaskError, SimError, UnknownEnvError, VulkanSetupError
from sim.maniskill_env import SUPPORTED_ENVS, ManiSkillEnv, SimEnvConfig, make_sim_env

__all__ = [
    "SUPPORTED_ENVS",
    "Env",
    "ManiSkillEnv",
    "MissingTaskError",
    "Observation",
    "SimEnvConfig",
    "SimError",
    "UnknownEnvError",
    "VulkanSetupError",
    "make_sim_env",
]
