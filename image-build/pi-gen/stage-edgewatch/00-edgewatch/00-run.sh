#!/bin/bash -e
# pi-gen, on the build host: put the edgewatch .deb and Coral's apt repository into the image.
# The .deb comes from files/ next to this script (copy dist/edgewatch_<version>_arm64.deb there),
# the newest one if there are several.
shopt -s nullglob
debs=(files/edgewatch_*_arm64.deb)
if [ ${#debs[@]} -eq 0 ]; then
	echo "stage-edgewatch: no files/edgewatch_*_arm64.deb in $(pwd): build it with" >&2
	echo "  image-build/build-deb --arch arm64 && cp dist/edgewatch_*_arm64.deb $(pwd)/files/" >&2
	exit 1
fi
deb=$(printf '%s\n' "${debs[@]}" | sort -V | tail -n 1)
install -m 644 "${deb}" "${ROOTFS_DIR}/tmp/edgewatch.deb"

# Coral Edge TPU runtime (libedgetpu1-std) from Google's apt repository. Its key is fetched now
# unless files/coral-archive-key.gpg is there (binary or ASCII-armoured, e.g. pinned by you).
key=files/coral-archive-key.gpg
if [ ! -s "${key}" ]; then
	curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg -o "${key}.download"
	mv "${key}.download" "${key}"
fi
install -d -m 755 "${ROOTFS_DIR}/etc/apt/keyrings"
if grep -q -- "-----BEGIN PGP PUBLIC KEY BLOCK-----" "${key}"; then
	gpg --dearmor <"${key}" >"${ROOTFS_DIR}/etc/apt/keyrings/coral-edgetpu.gpg"
else
	cp "${key}" "${ROOTFS_DIR}/etc/apt/keyrings/coral-edgetpu.gpg"
fi
chmod 644 "${ROOTFS_DIR}/etc/apt/keyrings/coral-edgetpu.gpg"
echo "deb [signed-by=/etc/apt/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
	>"${ROOTFS_DIR}/etc/apt/sources.list.d/coral-edgetpu.list"
