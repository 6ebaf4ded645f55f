"""The systemd units: valid, hardened as far as the daemon's needs allow, wired for notify/watchdog."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "systemd"
INSTALLED_BIN = "/opt/edgewatch/venv/bin/edgewatch"
EXPOSURE_LIMIT = 3.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze missing: apt-get install systemd")


def _here(unit: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's edgewatch (verify checks the binary exists)."""
    local = Path(sys.executable).parent / "edgewatch"
    assert local.exists(), "pip install -e . first"
    out = tmp_path / unit
    out.write_text((UNITS / unit).read_text().replace(INSTALLED_BIN, str(local)))
    return out


def _service(unit: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for line in (UNITS / unit).read_text().splitlines():
        if m := re.match(r"^\[(\w+)\]$", line):
            section = m.group(1)
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("unit", ["edgewatch.service", "edgewatch-models.service"])
def test_units_verify_and_score(unit: str, tmp_path: Path) -> None:
    path = _here(unit, tmp_path)
    verify = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--threshold={int(EXPOSURE_LIMIT * 10)}",
                          str(path)], capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", sec.stdout).group(1))
    print(f"{unit}: exposure {score}")
    assert score <= EXPOSURE_LIMIT, sec.stdout[-3000:]


def test_service_is_notify_with_watchdog_and_dedicated_user() -> None:
    s = _service("edgewatch.service")
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert int(s["WatchdogSec"][0]) > 0 and s["Restart"] == ["on-failure"]
    assert s["User"] == ["edgewatch"] and s["ExecStart"] == [f"{INSTALLED_BIN} serve"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key in ("StateDirectory", "CacheDirectory", "ConfigurationDirectory", "LogsDirectory"):
        assert s[key] == ["edgewatch"], key
    assert s["CapabilityBoundingSet"] == [""] and s["ProtectSystem"] == ["strict"]
    assert s["SystemCallFilter"][0] == "@system-service" and s["DevicePolicy"] == ["closed"]
    assert "StartLimitBurst=" in (UNITS / "edgewatch.service").read_text()


def test_packaged_config_is_valid_and_all_optional(tmp_path: Path) -> None:
    from edgewatch.daemon.config import load_settings

    settings = load_settings(UNITS / "config.yaml")
    assert settings.server.port == 32168 and settings.mqtt.host is None and settings.cameras == []
