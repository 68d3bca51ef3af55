"""The Vulkan/asset preparation runs before ManiSkill is imported and never imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim import vulkan
from sim.errors import SimError, VulkanSetupError

REPO = Path(__file__).resolve().parents[2]


def _icd(folder: Path, name: str, api: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"ICD": {"api_version": api, "library_path": "libvulkan_lvp.so"}}))
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES", "MS_ASSET_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(vulkan, "find_gpu_icd", lambda dirs=None: None)
    return tmp_path


def test_sets_lavapipe_and_asset_dir(clean_env, monkeypatch):
    icd = _icd(clean_env / "icd.d", "lvp_icd.json", "1.4.305")
    monkeypatch.setattr(vulkan, "ICD_DIRS", (clean_env / "icd.d",))
    setup = vulkan.prepare_sim_env(asset_dir=clean_env / "assets")
    assert setup.source == "lavapipe"
    assert os.environ["VK_ICD_FILENAMES"] == str(icd)
    assert os.environ["MS_ASSET_DIR"] == str(clean_env / "assets")
    assert (clean_env / "assets").is_dir()


def test_respects_variables_already_set(clean_env, monkeypatch):
    monkeypatch.setenv("VK_ICD_FILENAMES", "/somewhere/my_icd.json")
    monkeypatch.setenv("MS_ASSET_DIR", str(clean_env / "mine"))
    setup = vulkan.prepare_sim_env()
    assert setup.source == "env"
    assert os.environ["VK_ICD_FILENAMES"] == "/somewhere/my_icd.json"
    assert setup.asset_dir == str(clean_env / "mine")


def test_old_lavapipe_is_refused_with_the_install_command(clean_env, monkeypatch):
    _icd(clean_env / "icd.d", "lvp_icd.json", "1.3.230")  # Debian 12's own Mesa 22
    monkeypatch.setattr(vulkan, "ICD_DIRS", (clean_env / "icd.d",))
    with pytest.raises(VulkanSetupError) as info:
        vulkan.prepare_sim_env(asset_dir=clean_env / "assets")
    message = str(info.value)
    assert "\n" not in message
    assert "scripts/setup.sh" in message and "mesa-vulkan-drivers" in message
    assert isinstance(info.value, SimError)
    assert "VK_ICD_FILENAMES" not in os.environ


def test_newest_lavapipe_wins(clean_env, monkeypatch):
    _icd(clean_env / "a", "lvp_icd.json", "1.3.250")
    newer = _icd(clean_env / "b", "lvp_icd.x86_64.json", "1.4.305")
    monkeypatch.setattr(vulkan, "ICD_DIRS", (clean_env / "a", clean_env / "b"))
    assert vulkan.find_lavapipe_icd() == newer


def test_importing_sim_modules_does_not_import_maniskill():
    code = (
        "import sys, sim.vulkan, sim.maniskill_env, sim.env, sim.errors; "
        "sys.exit(int(any(m.split('.')[0] in ('mani_skill', 'sapien') for m in sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
