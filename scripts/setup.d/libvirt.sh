# shellcheck shell=bash
# Sourced by scripts/setup after apt-get install: make libvirt usable for the `vm` lab guest.
#
# Without systemd nothing starts libvirt, and without Debian's libvirt-daemon-system nothing creates
# the libvirt-qemu user or /var/log/libvirt (libvirtd then exits at once, or refuses the QEMU driver
# with "Failed to parse user 'libvirt-qemu'"). tracer.lab.vm.ensure_libvirt does exactly that,
# idempotently, so CI and `tracepath-l2 lab up` share one implementation. It also pre-builds the
# guest initramfs (cached in /var/cache/tracepath-l2/) so the first VM lab does not pay for it.
# The daemons are left running: like a systemd service, they are host state, not lab state.

tl2_libvirt_setup() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)" || return 1
    (cd "$root" && "${PYTHON:-python3}" -c '
from tracer.lab.initramfs import build_initramfs
from tracer.lab.vm import ensure_libvirt
ensure_libvirt(timeout=60)
print("libvirt: qemu:///system answers; guest initramfs", build_initramfs())
') || { echo "scripts/setup.d/libvirt.sh: libvirt setup failed" >&2; return 1; }
}

tl2_libvirt_setup
