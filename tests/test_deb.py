"""The Debian package (image-build/build-deb): what is in it, its maintainer scripts, and a real
install, upgrade, remove, reinstall and purge in a throwaway Debian root (mmdebstrap + chroot).

The .deb is built for this host's architecture with --no-models (the model pack has its own test),
its wheels cached under <cache>/wheels/<arch>, the Debian root cached under <cache>/rootfs.
The arm64 build under qemu (image-build/build-rootfs-test) takes minutes: it runs only with
EDGEWATCH_SLOW_TESTS=1.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from scratch import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
IMAGE_BUILD = ROOT / "image-build"
BUILD_DEB = IMAGE_BUILD / "build-deb"
ROOTFS_TEST = IMAGE_BUILD / "build-rootfs-test"
MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                                reason="dpkg-deb not found: these tests build a Debian package (Debian/Ubuntu hosts)")


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def build_deb(out: Path, cache_dir: Path, *args: str) -> Path:
    env = dict(os.environ, EDGEWATCH_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([str(BUILD_DEB), "--out", str(out), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"build-deb failed:\n{proc.stderr[-6000:]}"
    deb = Path(proc.stdout.strip().splitlines()[-1])
    assert deb.is_file() and deb.parent == out.resolve(), proc.stdout
    return deb


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True, check=True).stdout.strip()


def deb_contents(deb: Path) -> dict[str, str]:
    """path -> the `dpkg-deb --contents` line (mode, owner, size, date, path[ -> target])."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        path = line.split(None, 5)[5].split(" -> ")[0]
        entries[path.removeprefix(".").rstrip("/") or "/"] = line
    return entries


def shell_scripts() -> list[Path]:
    """Every file under image-build/ that starts with a sh or bash shebang."""
    found = []
    for path in sorted(IMAGE_BUILD.rglob("*")):
        if path.is_file() and path.suffix != ".deb" and path.open("rb").read(2) == b"#!":
            first = path.read_text(errors="replace").splitlines()[0]
            if re.search(r"\b(ba)?sh\b", first):
                found.append(path)
    return found


@pytest.fixture(scope="module")
def deb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not found")
    return build_deb(scratch_dir(request, tmp_path_factory, "dist"), cache_dir, "--no-models")


@pytest.fixture(scope="module")
def control_dir(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("control")
    subprocess.run(["dpkg-deb", "--control", str(deb), str(dst)], check=True)
    return dst


# ---- the scripts themselves ------------------------------------------------------------------------

def test_build_deb_help_and_bad_arguments() -> None:
    ok = subprocess.run([str(BUILD_DEB), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--no-models" in ok.stdout and "--arch" in ok.stdout
    bad = subprocess.run([str(BUILD_DEB), "--arch", "armhf", "--no-models"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unsupported --arch armhf" in bad.stderr
    bad = subprocess.run([str(BUILD_DEB), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown argument" in bad.stderr


def test_every_shell_script_passes_sh_n_and_shellcheck() -> None:
    scripts = shell_scripts()
    names = {p.relative_to(IMAGE_BUILD).as_posix() for p in scripts}
    assert {"build-deb", "build-rootfs-test", "inject-into-image", "deb/postinst", "deb/prerm", "deb/postrm",
            "armbian/customize-image.sh"} <= names, names
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} is not executable"
        shell = "bash" if "bash" in script.read_text().splitlines()[0] else "sh"
        proc = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{shell} -n {script}: {proc.stderr}"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck); sh -n passed")
    proc = subprocess.run(["shellcheck", "--external-sources", *map(str, scripts)], capture_output=True, text=True,
                          cwd=IMAGE_BUILD)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---- what the .deb holds ---------------------------------------------------------------------------

@needs_dpkg
def test_control_fields(deb: Path) -> None:
    assert deb.name == f"edgewatch_{VERSION}_{host_arch()}.deb"
    assert deb_field(deb, "Package") == "edgewatch"
    assert deb_field(deb, "Version") == VERSION
    assert deb_field(deb, "Architecture") == host_arch()
    depends = [d.strip() for d in deb_field(deb, "Depends").split(",")]
    assert {"python3 (>= 3.11)", "python3 (<< 3.12)", "python3-venv", "python3-systemd", "adduser",
            "libstdc++6"} <= set(depends), depends
    # --no-models: the first boot converts, which fetches the weights with npm
    assert "npm" in deb_field(deb, "Recommends")
    assert int(deb_field(deb, "Installed-Size")) > 50_000  # KiB: the wheelhouse


@needs_dpkg
def test_files_are_where_debian_and_systemd_look(deb: Path) -> None:
    entries = deb_contents(deb)
    for path in ("/lib/systemd/system/edgewatch.service", "/lib/systemd/system/edgewatch-models.service",
                 "/etc/edgewatch/config.yaml", "/etc/default/edgewatch", "/lib/udev/rules.d/60-edgewatch.rules",
                 "/usr/share/doc/edgewatch/README.md", "/usr/share/doc/edgewatch/copyright"):
        assert path in entries, f"{path} missing from the .deb"
        assert entries[path].startswith("-rw-r--r-- root/root "), entries[path]
    assert entries["/usr/bin/edgewatch"].startswith("lrwxrwxrwx root/root ")
    assert entries["/usr/bin/edgewatch"].endswith("./usr/bin/edgewatch -> /opt/edgewatch/venv/bin/edgewatch")
    assert all(" root/root " in line for line in entries.values()), "every file must be root-owned"
    assert not any(p.startswith("/opt") for p in entries), "/opt/edgewatch is made by postinst, not shipped"
    assert not any("model-pack" in p for p in entries), "--no-models shipped models"


@needs_dpkg
def test_wheelhouse_is_complete_for_the_target_arch(deb: Path) -> None:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[host_arch()]
    wheels = sorted(Path(p).name for p in deb_contents(deb) if p.startswith("/usr/share/edgewatch/wheels/")
                    and p.endswith(".whl"))
    assert f"edgewatch-{VERSION}-py3-none-any.whl" in wheels
    for dist in ("numpy", "onnxruntime", "opencv_python_headless", "litestar", "uvicorn", "paho_mqtt",
                 "pydantic_core", "ai_edge_litert"):
        matches = [w for w in wheels if w.lower().startswith(dist + "-")]
        assert len(matches) == 1, f"{dist}: {matches}"
    for wheel in wheels:
        tags = wheel.removesuffix(".whl").split("-")[-3:]
        assert tags[2] == "any" or machine in tags[2], f"{wheel} is not for {machine}"
        assert tags[1] in ("none", "abi3", "cp311"), f"{wheel} is not for CPython 3.11"


@needs_dpkg
def test_shipped_files_match_the_sources(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    for name in ("edgewatch.service", "edgewatch-models.service"):
        assert (tmp_path / "lib/systemd/system" / name).read_bytes() == (ROOT / "systemd" / name).read_bytes()
    assert (tmp_path / "etc/edgewatch/config.yaml").read_bytes() == (ROOT / "systemd/config.yaml").read_bytes()
    assert (tmp_path / "usr/share/doc/edgewatch/README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    rules = (tmp_path / "lib/udev/rules.d/60-edgewatch.rules").read_text()
    for needle in ('ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", GROUP="plugdev", MODE="0660"',
                   'ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", GROUP="plugdev", MODE="0660"',
                   'SUBSYSTEM=="apex", KERNEL=="apex_*"', 'KERNEL=="rknpu*", GROUP="render"',
                   'DRIVERS=="RKNPU", GROUP="render"'):
        assert needle in rules
    default = (tmp_path / "etc/default/edgewatch").read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in default), "examples only, all commented"
    assert any(line.startswith("#EDGEWATCH_MQTT_HOST=") for line in default)


@needs_dpkg
def test_conffiles_and_maintainer_scripts(control_dir: Path) -> None:
    assert (control_dir / "conffiles").read_text().split() == ["/etc/edgewatch/config.yaml", "/etc/default/edgewatch"]
    md5sums = (control_dir / "md5sums").read_text()
    assert "lib/systemd/system/edgewatch.service" in md5sums and "usr/share/edgewatch/wheels/" in md5sums
    for name in MAINTAINER_SCRIPTS:
        script = control_dir / name
        assert os.access(script, os.X_OK), f"{name} not executable"
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n") and "set -e" in text
        assert "@DEB_VERSION@" not in text and "@REQUIREMENT@" not in text, f"{name}: placeholder left"
        proc = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"sh -n {name}: {proc.stderr}"
    postinst = (control_dir / "postinst").read_text()
    assert f'DEB_VERSION="{VERSION}"' in postinst
    assert "--no-index" in postinst and "[ -d /run/systemd/system ]" in postinst
    if shutil.which("shellcheck"):
        scripts = [str(control_dir / n) for n in MAINTAINER_SCRIPTS]
        proc = subprocess.run(["shellcheck", "-s", "sh", *scripts], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


# ---- the model pack --------------------------------------------------------------------------------

@needs_dpkg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_model_pack_is_shipped_and_installs_offline(installed_data_dir: Path, cache_dir: Path,
                                                    tmp_path: Path) -> None:
    """The pack is `edgewatch models install --default` run at build time (the conversion cache
    is warm once installed_data_dir has run); a box installs from it without fetching anything."""
    edgewatch = Path(sys.executable).with_name("edgewatch")
    if not edgewatch.exists():
        pytest.skip(f"no edgewatch command next to {sys.executable}")
    deb = build_deb(tmp_path / "dist", cache_dir, "--edgewatch", str(edgewatch), "--version", f"{VERSION}+pack")
    assert "npm" not in deb_field(deb, "Recommends")  # the pack makes npm optional
    entries = deb_contents(deb)
    manifests = [p for p in entries if re.fullmatch(r"/usr/share/edgewatch/model-pack/[^/]+/manifest\.json", p)]
    assert "/usr/share/edgewatch/model-pack/nanodet/manifest.json" in manifests
    assert any(p.endswith(".onnx") and p.startswith("/usr/share/edgewatch/model-pack/nanodet/") for p in entries)

    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    env = dict(os.environ, EDGEWATCH_DATA_DIR=str(tmp_path / "data"),
               EDGEWATCH_MODEL_PACK=str(tmp_path / "x/usr/share/edgewatch/model-pack"),
               EDGEWATCH_CACHE_DIR=str(tmp_path / "empty-cache"))  # nothing to convert from
    proc = subprocess.run([str(edgewatch), "models", "install", "--default"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "taking the converted model from the model pack" in proc.stdout + proc.stderr
    assert not (tmp_path / "empty-cache" / "conversions").exists()
    assert (tmp_path / "data/models/nanodet/manifest.json").is_file()


# ---- install, upgrade, remove, purge in a Debian root ----------------------------------------------

def chroot_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, mmdebstrap)"
    for tool in ("mmdebstrap", "unshare", "chroot", "dpkg-deb"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install mmdebstrap)"
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        return "cannot create a mount namespace here (unshare --mount)"
    return None


class DebianRoot:
    """A throwaway Debian root from the cached mmdebstrap tarball; commands run chrooted in a private
    mount namespace with /dev and /proc, like image-build/inject-into-image does."""

    def __init__(self, path: Path, tarball: Path | None = None) -> None:
        self.path = path
        if tarball is not None:
            path.mkdir()
            subprocess.run(["tar", "-C", str(path), "-xf", str(tarball)], check=True)

    def run(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        inner = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && r=$1 && shift && exec chroot "$r" "$@"'
        env = ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", inner, "in_root",
                               str(self.path), *env, *argv], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        return proc

    def install(self, deb: Path) -> subprocess.CompletedProcess:
        shutil.copy(deb, self.path / "tmp" / deb.name)
        return self.run("dpkg", "-i", f"/tmp/{deb.name}")

    def __truediv__(self, rel: str) -> Path:
        return self.path / rel.lstrip("/")

    def user_exists(self, name: str) -> bool:
        return self.run("getent", "passwd", name, check=False).returncode == 0

    def group_exists(self, name: str) -> bool:
        return self.run("getent", "group", name, check=False).returncode == 0


def tiny_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, edgewatch-test-extra 1.0."""
    info = "edgewatch_test_extra-1.0.dist-info"
    files = {
        "edgewatch_test_extra.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: edgewatch-test-extra\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test_deb\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = folder / "edgewatch_test_extra-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def rootfs_tarball(cache_dir: Path) -> Path:
    if reason := chroot_prerequisites():
        pytest.skip(reason)
    proc = subprocess.run([str(ROOTFS_TEST), "--arch", host_arch(), "--tarball-only"], capture_output=True, text=True,
                          env=dict(os.environ, EDGEWATCH_CACHE_DIR=str(cache_dir)), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@needs_dpkg
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_install_upgrade_remove_reinstall_purge_in_a_debian_root(deb: Path, rootfs_tarball: Path, cache_dir: Path,
                                                                  tmp_path: Path, installed_data_dir: Path) -> None:
    upgrade = build_deb(tmp_path / "dist2", cache_dir, "--no-models", "--version", f"{VERSION}+upgrade1")
    root = DebianRoot(tmp_path / "root", rootfs_tarball)

    # -- first install: offline venv, user, units, config --
    root.install(deb)
    assert root.run("/opt/edgewatch/venv/bin/edgewatch", "--version").stdout.strip().endswith(VERSION)
    assert root.run("edgewatch", "--version").stdout.strip().endswith(VERSION)  # /usr/bin/edgewatch
    root.run("/opt/edgewatch/venv/bin/python", "-c", "import numpy, cv2, onnxruntime, systemd.daemon, systemd.journal")
    ids = root.run("id", "edgewatch").stdout
    for group in ("edgewatch", "video", "render", "plugdev"):
        assert f"({group})" in ids, ids
    passwd = root.run("getent", "passwd", "edgewatch").stdout.strip().split(":")
    assert passwd[5] == "/var/lib/edgewatch" and passwd[6] == "/usr/sbin/nologin", passwd
    assert int(passwd[2]) < 1000, "a system user"
    for unit in ("edgewatch.service", "edgewatch-models.service"):
        assert (root / f"/lib/systemd/system/{unit}").is_file()
        assert (root / f"/etc/systemd/system/multi-user.target.wants/{unit}").is_symlink(), f"{unit} not enabled"
    config = root / "/etc/edgewatch/config.yaml"
    assert config.read_bytes() == (ROOT / "systemd/config.yaml").read_bytes()
    assert root.run("stat", "-c", "%U:%G %a", "/etc/edgewatch/config.yaml").stdout.split() == ["root:edgewatch", "640"]
    assert root.run("stat", "-c", "%U:%G %a", "/var/lib/edgewatch").stdout.split() == ["edgewatch:edgewatch", "750"]
    assert (root / "/lib/udev/rules.d/60-edgewatch.rules").is_file()
    first_venv = os.readlink(root / "/opt/edgewatch/venv")

    # an admin types `sudo edgewatch models install` in a shell: it works on the service's data
    # dir, as the service user, so the service can replace those files later
    shutil.copytree(installed_data_dir / "models", root / "/srv/pack")
    out = root.run("EDGEWATCH_MODEL_PACK=/srv/pack", "edgewatch", "models", "install", "--default")
    assert "running as the service user 'edgewatch', on /var/lib/edgewatch" in out.stderr
    owner = root.run("stat", "-c", "%U", "/var/lib/edgewatch/models/nanodet/manifest.json").stdout.strip()
    assert owner == "edgewatch"
    assert "nanodet" in root.run("edgewatch", "models", "list").stdout
    # on a free port: the chroot shares the host's network, where a daemon may be serving :32168
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = root.run("env", f"EDGEWATCH_SERVER_PORT={port}", "edgewatch", "status", check=False)
    assert status.returncode == 3 and "not running" in status.stdout, status.stdout

    # configuring again with nothing changed keeps the venv (no rebuild), as dpkg-reconfigure would
    root.run("/var/lib/dpkg/info/edgewatch.postinst", "configure", VERSION)
    assert os.readlink(root / "/opt/edgewatch/venv") == first_venv
    # an image or admin adds a package of its own (how the Armbian hook adds rknn-toolkit-lite2):
    # a local wheel plus a requirement line, then reconfigure: the venv is rebuilt with it
    (root / "/usr/local/share/edgewatch/wheels").mkdir(parents=True)
    tiny_wheel(root / "/usr/local/share/edgewatch/wheels")
    (root / "/etc/edgewatch/pip-requirements.txt").write_text("edgewatch-test-extra==1.0\n")
    root.run("/var/lib/dpkg/info/edgewatch.postinst", "configure", VERSION)
    assert os.readlink(root / "/opt/edgewatch/venv") != first_venv
    first_venv = os.readlink(root / "/opt/edgewatch/venv")
    root.run("/opt/edgewatch/venv/bin/python", "-c", "import edgewatch_test_extra")

    # -- the admin edits the config, the daemon has data --
    config.write_text(config.read_text() + "\nmqtt:\n  host: broker.lan\n")
    (root / "/etc/default/edgewatch").write_text("EDGEWATCH_NODE_ID=test-box\n")
    (root / "/var/lib/edgewatch/settings.json").write_text('{"min_confidence": 0.6}')
    (root / "/var/lib/edgewatch/models").mkdir(exist_ok=True)

    # -- upgrade: config and data kept, venv rebuilt for the new version, the old one kept --
    out = root.install(upgrade).stdout
    assert "installing into /opt/edgewatch/venvs/" in out
    assert root.run("dpkg-query", "-W", "-f", "${Version}", "edgewatch").stdout == f"{VERSION}+upgrade1"
    assert "broker.lan" in config.read_text()
    assert (root / "/etc/default/edgewatch").read_text() == "EDGEWATCH_NODE_ID=test-box\n"
    assert (root / "/var/lib/edgewatch/settings.json").read_text() == '{"min_confidence": 0.6}'
    second_venv = os.readlink(root / "/opt/edgewatch/venv")
    assert second_venv != first_venv
    assert sorted(p.name for p in (root / "/opt/edgewatch/venvs").iterdir()) == sorted(
        Path(v).name for v in (first_venv, second_venv))
    assert root.run("edgewatch", "--version").returncode == 0
    root.run("/opt/edgewatch/venv/bin/python", "-c", "import edgewatch_test_extra")  # kept across the upgrade

    # -- remove: program gone, config, data and user kept --
    root.run("dpkg", "--remove", "edgewatch")
    assert not (root / "/opt/edgewatch").exists()
    assert not (root / "/usr/bin/edgewatch").is_symlink()
    assert not (root / "/lib/systemd/system/edgewatch.service").exists()
    assert "broker.lan" in config.read_text()
    assert (root / "/var/lib/edgewatch/settings.json").exists()
    assert root.user_exists("edgewatch")

    # -- reinstall after remove: the kept config is used, the venv is back --
    root.install(upgrade)
    assert "broker.lan" in config.read_text()
    assert root.run("edgewatch", "--version").stdout.strip().endswith(VERSION)
    assert (root / "/etc/systemd/system/multi-user.target.wants/edgewatch.service").is_symlink()

    # -- purge: everything goes, the user too --
    root.run("dpkg", "--purge", "edgewatch")
    for path in ("/etc/edgewatch", "/etc/default/edgewatch", "/var/lib/edgewatch", "/var/cache/edgewatch",
                 "/var/log/edgewatch", "/opt/edgewatch", "/lib/systemd/system/edgewatch.service",
                 "/lib/udev/rules.d/60-edgewatch.rules", "/etc/systemd/system/multi-user.target.wants/edgewatch.service"):
        assert not (root / path).exists() and not (root / path).is_symlink(), f"{path} left after purge"
    assert not root.user_exists("edgewatch") and not root.group_exists("edgewatch")
    assert root.group_exists("render"), "shared groups stay"
    status = root.run("dpkg-query", "-W", "-f", "${Status}", "edgewatch", check=False)
    assert status.returncode != 0 or "not-installed" in status.stdout


# ---- SD-card images without mounting --------------------------------------------------------------

def partition_file(image: Path, dst: Path) -> Path:
    """Copy the root (largest Linux) partition of a disk image out to a file."""
    fields = subprocess.run([sys.executable, str(IMAGE_BUILD / "lib/fsdiff.py"), "partition", str(image)],
                            capture_output=True, text=True, check=True).stdout.split()
    start, sectors, sector = int(fields[1]), int(fields[2]), int(fields[3])
    size = sectors * sector
    with image.open("rb") as src, dst.open("wb") as out:
        src.seek(start * sector)
        remaining = size
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            assert chunk, "image shorter than its partition table says"
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)  # sparse: an empty filesystem's zeros take no disk
            else:
                out.write(chunk)
            remaining -= len(chunk)
        out.truncate(size)
    return dst


def fs_uuid(part: Path) -> str:
    out = subprocess.run(["dumpe2fs", "-h", str(part)], capture_output=True, text=True, check=True).stdout
    return re.search(r"^Filesystem UUID:\s+(\S+)", out, re.M).group(1)


def debugfs(part: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(part)], capture_output=True, text=True, check=True).stdout


def ls_names(part: Path, folder: str) -> list[str]:
    """Names in a folder of an ext4 image (`debugfs ls -p`), without . and .."""
    names = [line.split("/")[5] for line in debugfs(part, f"ls -p {folder}").splitlines() if line.count("/") >= 6]
    return [n for n in names if n not in (".", "..")]


@needs_dpkg
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_inject_into_image_installs_and_keeps_the_filesystem(deb: Path, rootfs_tarball: Path,
                                                             tmp_path: Path) -> None:
    """assemble-image makes an SD-card image from the Debian root (no mounts); inject-into-image
    installs the .deb into it (no mounts) and writes back only what changed: the filesystem keeps
    its UUID and the extended attributes of files the install did not touch."""
    for tool in ("sfdisk", "debugfs", "resize2fs", "mkfs.vfat", "mcopy"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (apt-get install fdisk e2fsprogs dosfstools mtools)")
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["tar", "-C", str(tree), "-xf", str(rootfs_tarball)], check=True)
    try:
        os.setxattr(tree / "usr/bin/dpkg", "user.edgewatch-test", b"kept")
        xattr = True
    except OSError:
        xattr = False  # this filesystem has no user xattrs: the UUID check still runs
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config.txt").write_text("arm_64bit=1\n")
    image = tmp_path / "card.img"
    proc = subprocess.run([str(IMAGE_BUILD / "assemble-image"), "--rootfs", str(tree), "--boot", str(boot),
                           str(image)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shutil.rmtree(tree)
    table = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    assert '"type":"c"' in table.replace(" ", "") and '"type":"83"' in table.replace(" ", "")
    mdir = subprocess.run(["mdir", "-i", f"{image}@@4M", "::/"], capture_output=True, text=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert "config" in mdir.stdout, mdir.stdout + mdir.stderr
    before = fs_uuid(partition_file(image, tmp_path / "before.ext4"))
    (tmp_path / "before.ext4").unlink()

    out = tmp_path / "card-edgewatch.img"
    proc = subprocess.run([str(IMAGE_BUILD / "inject-into-image"), "--out", str(out), str(image), str(deb)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "growing partition 2" in proc.stderr  # assemble-image left too little room for the venv
    image.unlink()
    part = partition_file(out, tmp_path / "after.ext4")
    out.unlink()
    fsck = subprocess.run(["e2fsck", "-fn", str(part)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fs_uuid(part) == before
    if xattr:
        assert "kept" in debugfs(part, "ea_get /usr/bin/dpkg user.edgewatch-test")
    assert "edgewatch:x:" in debugfs(part, "cat /etc/passwd")
    assert debugfs(part, "cat /etc/edgewatch/config.yaml") == (ROOT / "systemd/config.yaml").read_text()
    assert "edgewatch.service" in debugfs(part, "ls -p /etc/systemd/system/multi-user.target.wants")
    # the venv's files were written back byte for byte: the biggest file of each of three packages
    # (compiled modules of tens of MB) has the sha256 its wheel's RECORD says
    site = f"/opt/edgewatch/venv/lib/{ls_names(part, '/opt/edgewatch/venv/lib')[0]}/site-packages"
    infos = [n for n in ls_names(part, site) if n.endswith(".dist-info")]
    for package in ("onnxruntime", "numpy", "edgewatch"):
        info = next(n for n in infos if n.lower().startswith(package + "-"))
        rows = [r.rsplit(",", 2) for r in debugfs(part, f"cat {site}/{info}/RECORD").splitlines()]
        name, digest, _ = max((r for r in rows if len(r) == 3 and r[2].isdigit()), key=lambda r: int(r[2]))
        data = subprocess.run(["debugfs", "-R", f"cat {site}/{name}", str(part)], capture_output=True,
                              check=True).stdout
        got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={got}", f"{name} differs from its wheel after inject-into-image"


@pytest.mark.skipif(shutil.which("genimage") is None, reason="genimage not installed (apt-get install genimage)")
def test_genimage_config_builds_the_same_layout(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("arm_64bit=1\n")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("edgewatch\n")
    (tmp_path / "in").mkdir()
    proc = subprocess.run(["genimage", "--config", str(IMAGE_BUILD / "genimage/edgewatch-sdcard.cfg"),
                           "--rootpath", str(root), "--inputpath", str(tmp_path / "in"),
                           "--outputpath", str(tmp_path / "out"), "--tmppath", str(tmp_path / "tmp")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image = tmp_path / "out/edgewatch-sdcard.img"
    listing = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    assert '"start":8192' in listing.replace(" ", "")
    assert "edgewatch" in debugfs(tmp_path / "out/rootfs.ext4", "cat /etc/hostname")
    mdir = subprocess.run(["mdir", "-i", f"{image}@@4M", "::/"], capture_output=True, text=True,
                          env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert "config" in mdir.stdout


# ---- arm64 under qemu (opt-in: minutes) ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(3600)
@needs_dpkg
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_trixie_deb_installs_in_a_trixie_root(tmp_path: Path, cache_dir: Path) -> None:
    """Debian 13 / Raspberry Pi OS trixie has Python 3.13: --suite trixie ships cp313 wheels."""
    if reason := chroot_prerequisites():
        pytest.skip(reason)
    deb = build_deb(tmp_path, cache_dir, "--suite", "trixie", "--no-models")
    assert deb_field(deb, "Version").endswith("+deb13")
    assert "python3 (>= 3.13), python3 (<< 3.14)" in deb_field(deb, "Depends")
    wheels = [name for name in deb_contents(deb) if name.endswith(".whl")]
    assert any("-cp313-" in w for w in wheels) and not any("-cp311-" in w for w in wheels)
    proc = subprocess.run([str(ROOTFS_TEST), "--arch", host_arch(), "--suite", "trixie", "--deb", str(deb)],
                          capture_output=True, text=True, timeout=1100, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, EDGEWATCH_CACHE_DIR=str(cache_dir)))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert re.search(r"^rootfs:\s+trixie ", proc.stdout, re.M), proc.stdout
    assert re.search(rf"^version:\s+edgewatch, version {re.escape(VERSION)}$", proc.stdout, re.M), proc.stdout
    assert "onnxruntime" in proc.stdout and "systemd.daemon ok" in proc.stdout


@pytest.mark.skipif(os.environ.get("EDGEWATCH_SLOW_TESTS") != "1",
                    reason="arm64 under qemu takes 10+ minutes: set EDGEWATCH_SLOW_TESTS=1")
def test_arm64_deb_installs_and_runs_under_qemu(cache_dir: Path) -> None:
    if reason := chroot_prerequisites():
        pytest.skip(reason)
    if host_arch() != "arm64" and subprocess.run(["sh", "-c", "command -v arch-test && arch-test arm64"],
                                                 capture_output=True).returncode != 0:
        pytest.skip("cannot run arm64 binaries: apt-get install qemu-user-static binfmt-support arch-test "
                    "(image-build/build-rootfs-test --setup-host does it)")
    proc = subprocess.run([str(ROOTFS_TEST), "--arch", "arm64"], capture_output=True, text=True, timeout=3500,
                          env=dict(os.environ, EDGEWATCH_CACHE_DIR=str(cache_dir)), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert re.search(r"^machine:\s+aarch64$", proc.stdout, re.M), proc.stdout
    assert re.search(rf"^version:\s+edgewatch, version {re.escape(VERSION)}$", proc.stdout, re.M), proc.stdout
    assert "systemd.daemon ok" in proc.stdout
