#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine, quick when everything is in place:
#   1. Debian packages: libusb-1.0-0 (pyrealsense2) and a Vulkan driver that SAPIEN accepts
#      on a CPU (lavapipe from Mesa >= 25; on Debian 12 that is bookworm-backports), and the
#      FFmpeg shared libraries that torchcodec (LeRobot's video decoder) loads;
#   2. .venv with Python 3.12;
#   3. the project and its test tools, re-installed only when pyproject.toml changes.
# Source it or run it; it changes directory to the repository root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root to run: $*"; return 1; fi
}

mesa_major() {
    local version
    version="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
    echo "${version%%.*}"
}

# torchcodec dlopens FFmpeg's libraries by soname and, without them, prints a traceback per FFmpeg
# version it tries whenever LeRobot decodes video; these are the runtime libraries (not the ffmpeg
# program) of the release this Debian ships: FFmpeg 5.1 on bookworm, 7.1 on trixie.
ffmpeg_packages() {
    case "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" in
        bookworm) echo libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4 ;;
        trixie) echo libavutil59 libavcodec61 libavformat61 libavdevice61 libavfilter10 libswscale8 libswresample5 ;;
        *) echo "" ;;
    esac
}

package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

debian_packages_ok() {
    [ -e /usr/share/vulkan/icd.d/lvp_icd.json ] || return 1
    [ "$(mesa_major)" -ge 25 ] 2>/dev/null || return 1
    local package
    for package in libusb-1.0-0 libvulkan1 $(ffmpeg_packages); do
        package_installed "$package" || return 1
    done
}

# The backports suite must come from the mirror this machine already uses.
debian_mirror() {
    local uri
    uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
    [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

install_debian_packages() {
    debian_packages_ok && return 0
    command -v apt-get >/dev/null || { say "not a Debian machine: install libusb-1.0 and Mesa >= 25 lavapipe by hand"; return 1; }
    local codename target=()
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    if [ "$codename" = "bookworm" ]; then
        local list=/etc/apt/sources.list.d/lrm-robot-bookworm-backports.sources
        if ! grep -qs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/*; then
            say "adding bookworm-backports from $(debian_mirror) (Mesa 25 lavapipe for ManiSkill on a CPU)"
            printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$(debian_mirror)" | as_root tee "$list" >/dev/null
        fi
        target=(-t bookworm-backports)
    fi
    local ffmpeg
    ffmpeg="$(ffmpeg_packages)"
    [ -n "$ffmpeg" ] || say "Debian $codename: install FFmpeg's shared libraries by hand (LeRobot's video decoding needs them)"
    say "installing Debian packages: libusb-1.0-0, libvulkan1, mesa-vulkan-drivers${ffmpeg:+, FFmpeg libraries ($ffmpeg)}"
    as_root apt-get update -qq
    # shellcheck disable=SC2086  # $ffmpeg is a list of package names
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        "${target[@]}" mesa-vulkan-drivers libvulkan1 libusb-1.0-0 $ffmpeg >/dev/null
    debian_packages_ok || { say "Mesa >= 25 lavapipe is still missing after apt-get"; return 1; }
}

find_python312() {
    local candidate
    for candidate in "${LRM_PYTHON:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 \
        /usr/local/bin/python3.12 /usr/bin/python3.12; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            command -v "$candidate" || echo "$candidate"
            return 0
        fi
    done
    return 1
}

make_venv() {
    if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
        return 0
    fi
    local python
    python="$(find_python312)" || { say "Python 3.12 not found: install it (e.g. pyenv install 3.12) or set LRM_PYTHON"; return 1; }
    say "creating .venv with $python"
    rm -rf .venv
    "$python" -m venv .venv
}

install_project() {
    local stamp
    stamp="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
    [ "$(cat .venv/.setup-stamp 2>/dev/null)" = "$stamp" ] && return 0
    say "installing the project into .venv (first time: a few minutes)"
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
    # uv resolves and installs torch + LeRobot + ManiSkill in well under a minute; plain pip takes many.
    .venv/bin/uv pip install -q --python .venv/bin/python -e ".[test]"
    echo "$stamp" > .venv/.setup-stamp
}

install_debian_packages
make_venv
install_project
