"""Prepare the process environment for SAPIEN's Vulkan renderer, before it is imported.

ManiSkill3 always creates a SAPIEN render system, even for state-only
observations, so even a headless CPU machine needs a Vulkan driver. On a
machine without a GPU that is Mesa's software driver, lavapipe; Debian 12's own
Mesa 22 build lacks `descriptorBindingPartiallyBound` and is refused by SAPIEN,
Mesa 25 from bookworm-backports works (see DESIGN.md, "ManiSkill3 on a CPU").
The Vulkan loader reads `VK_ICD_FILENAMES` when the first Vulkan instance is
created, and ManiSkill reads `MS_ASSET_DIR` at import time, so both must be set
before `mani_skill` or `sapien` is imported. This module imports neither.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from sim.errors import VulkanSetupError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSET_DIR = REPO_ROOT / ".cache" / "maniskill"

# Where Linux distributions and the Vulkan loader keep ICD manifests.
ICD_DIRS = (
    Path("/usr/share/vulkan/icd.d"),
    Path("/etc/vulkan/icd.d"),
    Path("/usr/local/share/vulkan/icd.d"),
)
# Lavapipe up to Mesa 22 (Debian 12's own, Vulkan API 1.3.230) is refused by SAPIEN.
MIN_LAVAPIPE_API = (1, 3, 240)

INSTALL_HINT = (
    "run `bash scripts/setup.sh` (installs Mesa >= 25 lavapipe; on Debian 12 from bookworm-backports: "
    "`apt-get install -t bookworm-backports mesa-vulkan-drivers`), "
    "or point VK_ICD_FILENAMES at a working Vulkan ICD json"
)


@dataclass(frozen=True)
class VulkanSetup:
    """What `prepare_sim_env` decided, for logs and for error messages."""

    icd: str | None  # the ICD manifest in use, None = left to the Vulkan loader (GPU driver)
    source: str  # "env" (already set), "lavapipe", "gpu"
    asset_dir: str


def _api_version(icd_json: Path) -> tuple[int, ...] | None:
    try:
        text = json.loads(icd_json.read_text())["ICD"]["api_version"]
        return tuple(int(p) for p in str(text).split("."))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_lavapipe_icd(dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The newest lavapipe ICD manifest recent enough for SAPIEN, or None."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for d in ICD_DIRS if dirs is None else dirs:
        for path in sorted(d.glob("lvp_icd*.json")) if d.is_dir() else ():
            version = _api_version(path)
            if version is None or version < MIN_LAVAPIPE_API:
                logger.debug("skipping %s: Vulkan API %s is too old for SAPIEN", path, version)
                continue
            found.append((version, path))
    return max(found)[1] if found else None


def find_gpu_icd(dirs: tuple[Path, ...] | None = None) -> Path | None:
    """An NVIDIA ICD manifest, if a GPU driver is installed (then the loader picks it)."""
    for d in ICD_DIRS if dirs is None else dirs:
        for path in sorted(d.glob("nvidia_icd*.json")) if d.is_dir() else ():
            return path
    return None


def prepare_sim_env(*, prefer_cpu: bool = False, asset_dir: str | os.PathLike[str] | None = None) -> VulkanSetup:
    """Set VK_ICD_FILENAMES and MS_ASSET_DIR for this process, unless already set.

    Call it before importing `mani_skill` or `sapien`; calling it again is cheap.
    A variable the user set is always respected. With an NVIDIA driver installed
    the loader is left to choose (the GPU), unless `prefer_cpu`; otherwise the
    lavapipe manifest is used. Raises `VulkanSetupError` (one line, with the
    install command) when there is neither.
    """
    if "MS_ASSET_DIR" not in os.environ and "mani_skill" in sys.modules:
        logger.warning("mani_skill was imported before sim.vulkan.prepare_sim_env: it keeps its default asset folder")
    asset = os.environ.setdefault("MS_ASSET_DIR", str(asset_dir or DEFAULT_ASSET_DIR))
    Path(asset).mkdir(parents=True, exist_ok=True)

    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES"):
        if os.environ.get(var):
            return VulkanSetup(icd=os.environ[var], source="env", asset_dir=asset)

    if not prefer_cpu and find_gpu_icd() is not None:
        return VulkanSetup(icd=None, source="gpu", asset_dir=asset)

    icd = find_lavapipe_icd()
    if icd is None:
        raise VulkanSetupError(f"no Vulkan driver usable by SAPIEN/ManiSkill was found: {INSTALL_HINT}")
    os.environ["VK_ICD_FILENAMES"] = str(icd)
    logger.debug("using lavapipe Vulkan ICD %s, MS_ASSET_DIR=%s", icd, asset)
    return VulkanSetup(icd=str(icd), source="lavapipe", asset_dir=asset)
