#!/bin/bash -e
# pi-gen, inside the image (chroot, arm64 under qemu on an x86 host): install edgewatch and the
# Coral runtime, enable the services. Nothing starts here; both services start on first boot
# (edgewatch-models installs the shipped model pack, then edgewatch serves on :32168).
export DEBIAN_FRONTEND=noninteractive
apt-get update
# apt resolves the package's Depends (python3-venv, python3-systemd, ...); its postinst builds
# /opt/edgewatch/venv offline from the wheels inside the .deb (a few minutes under qemu).
apt-get install -y --no-install-recommends /tmp/edgewatch.deb
rm -f /tmp/edgewatch.deb
# libedgetpu1-std ships the Coral USB udev rule (plugdev); edgewatch's own
# /lib/udev/rules.d/60-edgewatch.rules covers the same ids, the Coral PCIe apex and the RK NPU.
apt-get install -y --no-install-recommends libedgetpu1-std
apt-get clean

systemctl enable edgewatch-models.service edgewatch.service

# fail the build early if anything is missing
test -f /lib/udev/rules.d/60-edgewatch.rules
test -e /usr/lib/aarch64-linux-gnu/libedgetpu.so.1 || test -e /usr/lib/libedgetpu.so.1
getent passwd edgewatch >/dev/null
/opt/edgewatch/venv/bin/edgewatch --version
/opt/edgewatch/venv/bin/python -c "import ai_edge_litert.interpreter"
