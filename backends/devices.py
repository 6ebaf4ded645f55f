"""Signals that tell which accelerator a board has, read from /dev, /sys and /proc."""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import re
from pathlib import Path

CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # unprogrammed / programmed Coral USB

# Where /dev, /sys, /proc and /etc are read from: "/" on a box; tests point it at a fake tree.
SYSROOT = Path("/")


def importable(module: str) -> bool:
    """True if ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def device_tree_compatible(root: Path | None = None) -> list[str]:
    root = root or SYSROOT
    try:
        raw = (root / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return []
    return [c.decode(errors="replace") for c in raw.split(b"\0") if c]


def rockchip_soc(root: Path | None = None) -> str | None:
    """The Rockchip SoC name (e.g. ``rk3588``) from the device tree, if this is a Rockchip board."""
    root = root or SYSROOT
    for comp in device_tree_compatible(root):
        if comp.startswith("rockchip,rk"):
            return comp.split(",", 1)[1]
    return None


# SoCs that share an NPU, and so run each other's .rknn files, by the name rknn-toolkit2 builds for
# (an Orange Pi 5's device tree says rk3588s; rknn_model_zoo builds "rk3566_rk3568" once).
NPU_FAMILY = {"rk3588s": "rk3588", "rk3582": "rk3588", "rk3568": "rk3566", "rv1103": "rv1106"}


def npu_family(soc: str | None) -> str | None:
    """The NPU a SoC name stands for (``rockchip,rk3588s``, ``rk3588s`` and ``RK3588`` all give ``rk3588``)."""
    if not soc:
        return None
    found = re.search(r"r[kv]\d{4}[a-z]?", soc.lower())
    name = found.group(0) if found else soc.lower()
    return NPU_FAMILY.get(name, name)


def rknpu_nodes(root: Path | None = None) -> list[str]:
    root = root or SYSROOT
    found = glob.glob(str(root / "dev/rknpu*"))
    found += [p for p in ("sys/kernel/debug/rknpu", "sys/module/rknpu") if (root / p).exists()]
    return found


def coral_devices(root: Path | None = None) -> list[str]:
    root = root or SYSROOT
    found = glob.glob(str(root / "dev/apex_*"))
    for dev in glob.glob(str(root / "sys/bus/usb/devices/*")):
        try:
            ids = ((Path(dev) / "idVendor").read_text().strip(), (Path(dev) / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            found.append(f"usb {ids[0]}:{ids[1]}")
    return found


def libedgetpu_present(root: Path | None = None) -> bool:
    root = root or SYSROOT
    if root == Path("/") and ctypes.util.find_library("edgetpu") is not None:
        return True
    return any((root / d / "libedgetpu.so.1").exists()
               for d in ("usr/lib", "usr/lib/aarch64-linux-gnu", "usr/lib/x86_64-linux-gnu", "usr/lib/arm-linux-gnueabihf"))


def jetson_release(root: Path | None = None) -> str | None:
    root = root or SYSROOT
    rel = root / "etc/nv_tegra_release"
    if rel.exists():
        return rel.read_text(errors="replace").split(",")[0].strip() or "Jetson"
    if any("tegra" in c for c in device_tree_compatible(root)):
        return "Jetson (tegra device tree)"
    return None
