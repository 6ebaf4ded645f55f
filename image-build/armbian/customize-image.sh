#!/bin/bash
# Armbian build framework hook (userpatches/customize-image.sh): an Orange Pi 5 / RK3588 image
# with edgewatch on the NPU. Armbian runs it inside the image's chroot as
#     customize-image.sh $RELEASE $LINUXFAMILY $BOARD $BUILD_DESKTOP
# with userpatches/overlay/ available as /tmp/overlay. See image-build/armbian/README.md.
#
# It installs:
#   - the edgewatch .deb from /tmp/overlay (newest edgewatch_*_arm64.deb); apt resolves its Depends;
#   - on Rockchip RK35xx boards: the RKNN runtime librknnrt.so into /usr/lib, from
#     /tmp/overlay/librknnrt.so if you put one there, else airockchip/rknn-toolkit2 at the tag
#     below (rknpu2/runtime/Linux/librknn_api/aarch64/librknnrt.so, checked against its sha256),
#     and makes sure the venv has the matching rknn-toolkit-lite2 (the "rknn" extra);
#   - enables edgewatch-models.service and edgewatch.service (they start on first boot).
set -euo pipefail

RELEASE=${1:-}
LINUXFAMILY=${2:-}
BOARD=${3:-}
OVERLAY=${OVERLAY:-/tmp/overlay}

# librknnrt.so and rknn-toolkit-lite2 must be the same release (image-build/constraints.txt pins
# the wheel the .deb ships to this version too).
RKNN_VERSION=${RKNN_VERSION:-2.3.2}
RKNN_RUNTIME_URL=${RKNN_RUNTIME_URL:-https://github.com/airockchip/rknn-toolkit2/raw/v${RKNN_VERSION}/rknpu2/runtime/Linux/librknn_api/aarch64/librknnrt.so}
# sha256 of librknnrt.so v2.3.2; set RKNN_RUNTIME_SHA256="" to skip the check for another version
RKNN_RUNTIME_SHA256=${RKNN_RUNTIME_SHA256-d31fc19c85b85f6091b2bd0f6af9d962d5264a4e410bfb536402ec92bac738e8}

log() { echo "edgewatch customize-image: $*"; }

is_rockchip_npu_board() {
    [ "${EDGEWATCH_RKNN:-auto}" != 0 ] || return 1
    [ "${EDGEWATCH_RKNN:-auto}" != 1 ] || return 0
    case "${LINUXFAMILY}:${BOARD}" in
        rk35xx:* | rockchip-rk3588:* | rockchip-rk3576:* | *:orangepi5* | *:rock-5* | *:nanopi-r6* | *:radxa-*) return 0 ;;
        *) return 1 ;;
    esac
}

install_edgewatch() {
    shopt -s nullglob
    local debs=("${OVERLAY}"/edgewatch_*_arm64.deb)
    shopt -u nullglob
    if [ ${#debs[@]} -eq 0 ]; then
        log "no ${OVERLAY}/edgewatch_*_arm64.deb: copy dist/edgewatch_<version>_arm64.deb to userpatches/overlay/" >&2
        exit 1
    fi
    local deb
    deb=$(printf '%s\n' "${debs[@]}" | sort -V | tail -n 1)
    log "installing $(basename "${deb}") for ${BOARD:-?} (${LINUXFAMILY:-?}, ${RELEASE:-?})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # postinst builds /opt/edgewatch/venv offline from the wheels in the .deb
    apt-get install -y -q --no-install-recommends "${deb}"
}

install_rknn_runtime() {
    local target=/usr/lib/librknnrt.so
    if [ -f "${OVERLAY}/librknnrt.so" ]; then
        log "RKNN runtime from ${OVERLAY}/librknnrt.so"
        install -m 0644 "${OVERLAY}/librknnrt.so" "${target}"
    else
        log "RKNN runtime ${RKNN_VERSION} from ${RKNN_RUNTIME_URL}"
        command -v curl >/dev/null || apt-get install -y -q --no-install-recommends curl ca-certificates
        curl -fsSL --retry 3 -o "${target}.download" "${RKNN_RUNTIME_URL}"
        if [ -n "${RKNN_RUNTIME_SHA256}" ]; then
            echo "${RKNN_RUNTIME_SHA256}  ${target}.download" | sha256sum -c --quiet - ||
                { rm -f "${target}.download"; log "librknnrt.so checksum mismatch" >&2; exit 1; }
        fi
        mv "${target}.download" "${target}"
        chmod 0644 "${target}"
    fi
    ldconfig
}

ensure_rknn_lite_in_venv() {
    local venv=/opt/edgewatch/venv
    if "${venv}/bin/python" -m pip show --quiet rknn-toolkit-lite2 >/dev/null 2>&1; then
        log "rknn-toolkit-lite2 already in the venv (the .deb was built with the rknn extra)"
        return 0
    fi
    # The .deb was built without the rknn extra: add the wheel where postinst looks for local
    # wheels and name it in the extra requirements, so every later venv rebuild (upgrades) keeps it.
    log "adding rknn-toolkit-lite2==${RKNN_VERSION} to the venv"
    local wheels=/usr/local/share/edgewatch/wheels
    install -d "${wheels}"
    shopt -s nullglob
    local local_wheels=("${OVERLAY}"/rknn_toolkit_lite2-*.whl)
    shopt -u nullglob
    if [ ${#local_wheels[@]} -gt 0 ]; then
        cp "${local_wheels[@]}" "${wheels}/"
    fi
    # the wheel and its dependencies not already shipped, for this python (needs the network)
    PIP_CONFIG_FILE=/dev/null "${venv}/bin/python" -m pip download --quiet --only-binary=:all: \
        --find-links "${wheels}" --find-links /usr/share/edgewatch/wheels \
        -d "${wheels}" "rknn-toolkit-lite2==${RKNN_VERSION}"
    install -d /etc/edgewatch
    echo "rknn-toolkit-lite2==${RKNN_VERSION}" >>/etc/edgewatch/pip-requirements.txt
    /var/lib/dpkg/info/edgewatch.postinst configure
}

main() {
    install_edgewatch
    if is_rockchip_npu_board; then
        install_rknn_runtime
        ensure_rknn_lite_in_venv
    else
        log "not an RK35xx board (${LINUXFAMILY}/${BOARD}): no RKNN runtime (EDGEWATCH_RKNN=1 forces it)"
    fi
    systemctl enable edgewatch-models.service edgewatch.service
    /opt/edgewatch/venv/bin/edgewatch --version
    apt-get clean
}

main "$@"
