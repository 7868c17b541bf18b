"""The lab VM's whole userland: a busybox-static initramfs that does DHCP and ARP forever.

Why an initramfs and no disk image: the guest only has to be a real virtio NIC behind a real libvirt
tap, emitting DHCP and ARP the way a cloud instance does at boot. A ~1 MB cpio built from packages
already on the host (the Debian cloud kernel's modules and busybox-static) boots in seconds under
TCG, needs no image download, and is rebuilt from scratch whenever its inputs change.

Why the guest loops: a trace started at any moment must see a complete exchange. The init runs
`udhcpc -q` (which always starts with DISCOVER, so each round is a full DORA), ARPs for the server
once it has a lease, sleeps ~3 s and starts over. Every step is printed to the serial console, which
libvirt writes to a file, so tests can wait for `tl2-guest: bound ...` instead of guessing.

The archive is written here in Python (cpio "newc" + gzip with a fixed mtime) rather than with
cpio(1): no extra tool, no root-only mknod for /dev/console, and identical inputs give an identical
file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from tracer.errors import EnvironmentMissing, LabError

CACHE_DIR = Path("/var/cache/tracepath-l2")
BUSYBOX = Path("/bin/busybox")
FORMAT_VERSION = "1"
"""Bump when the archive layout changes in a way the hashed inputs do not show."""

MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
)
"""Dependency order (busybox insmod resolves nothing): the Debian cloud kernel builds all of them as
modules, and virtio_net will not load before net_failover, nor virtio_pci before its two libs."""

INIT = """#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "tl2-guest: init"
for m in {modules}; do
    insmod /lib/modules/$m.ko || echo "tl2-guest: insmod $m failed"
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set eth0 up || echo "tl2-guest: no eth0"
echo "tl2-guest: eth0 $(cat /sys/class/net/eth0/address 2>/dev/null)"
while true; do
    rm -f /tmp/server
    if udhcpc -i eth0 -n -q -t 3 -T 2 -s /udhcpc.script >/dev/null 2>&1; then
        server=$(cat /tmp/server 2>/dev/null)
        if [ -n "$server" ]; then
            arping -c 1 -w 1 -I eth0 "$server" >/dev/null 2>&1 \\
                && echo "tl2-guest: arp $server answered" || echo "tl2-guest: arp $server unanswered"
        fi
        sleep 3
    else
        echo "tl2-guest: no lease"
        sleep 2
    fi
done
""".replace("{modules}", " ".join(MODULES))
"""PID 1 of the guest. It must never exit (the kernel would panic), hence the endless loop."""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    deconfig)
        ip addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
        echo "$serverid" > /tmp/server
        echo "tl2-guest: bound $ip from $serverid" > /dev/console
        ;;
    leasefail|nak)
        echo "tl2-guest: $1" > /dev/console
        ;;
esac
exit 0
"""
"""udhcpc's hook: configures the lease and reports it on the console (the line tests wait for)."""


def guest_kernel() -> tuple[Path, str]:
    """The newest /boot/vmlinuz-*-cloud-amd64 and its version (the cloud flavour has virtio as
    small modules and boots fastest). Raises EnvironmentMissing when it or its modules are absent."""
    kernels = sorted(Path("/boot").glob("vmlinuz-*-cloud-amd64"), key=lambda p: _version_key(p.name))
    if not kernels:
        raise EnvironmentMissing(
            "no guest kernel /boot/vmlinuz-*-cloud-amd64; apt-get install linux-image-cloud-amd64"
        )
    kernel = kernels[-1]
    version = kernel.name.removeprefix("vmlinuz-")
    if not Path(f"/lib/modules/{version}").is_dir():
        raise EnvironmentMissing(f"guest kernel {version} has no /lib/modules/{version}; reinstall it")
    return kernel, version


def _version_key(name: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", name)]


def find_module(version: str, name: str) -> Path:
    """Path of module `name` (maybe .ko.xz/.ko.zst/.ko.gz) under /lib/modules/VERSION."""
    root = Path(f"/lib/modules/{version}/kernel")
    for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"):
        hits = sorted(root.rglob(f"{name}{suffix}"))
        if hits:
            return hits[0]
    raise EnvironmentMissing(f"kernel module {name} not found under {root}")


def read_module(path: Path) -> bytes:
    """Module bytes, decompressed: busybox insmod hands the file to init_module() as is, and only
    finit_module() with a kernel built for it would understand compressed modules."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise EnvironmentMissing(f"{path.name} is zstd-compressed; apt-get install zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def build_initramfs() -> Path:
    """Build (or reuse) the guest's initramfs and return its path.

    Cached under /var/cache/tracepath-l2/ with a hash of every input in the name (kernel version,
    module bytes, busybox, init and udhcpc scripts), so a kernel upgrade or an edit to the scripts
    produces a new file, while repeated labs reuse the old one. Written to a temporary file and
    renamed, so concurrent labs never see half an archive. World-readable: QEMU runs as
    libvirt-qemu and opens it itself.
    """
    if not BUSYBOX.is_file():
        raise EnvironmentMissing(f"{BUSYBOX} missing; apt-get install busybox-static")
    _, version = guest_kernel()
    modules = {m: read_module(find_module(version, m)) for m in MODULES}
    busybox = BUSYBOX.read_bytes()
    digest = hashlib.sha256()
    for part in (FORMAT_VERSION, version, INIT, UDHCPC_SCRIPT):
        digest.update(part.encode() + b"\0")
    for blob in (busybox, *modules.values()):
        digest.update(hashlib.sha256(blob).digest())
    target = CACHE_DIR / f"initramfs-{version}-{digest.hexdigest()[:12]}.cpio.gz"
    if target.is_file():
        return target

    archive = _Cpio()
    for d in "bin sbin usr usr/bin usr/sbin dev proc sys tmp run lib lib/modules".split():
        archive.add(d, stat.S_IFDIR | 0o755)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("bin/busybox", stat.S_IFREG | 0o755, busybox)
    archive.add("bin/sh", stat.S_IFLNK | 0o777, b"busybox")
    archive.add("init", stat.S_IFREG | 0o755, INIT.encode())
    archive.add("udhcpc.script", stat.S_IFREG | 0o755, UDHCPC_SCRIPT.encode())
    for name, blob in modules.items():
        archive.add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, blob)

    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        CACHE_DIR.chmod(0o755)
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, prefix=".initramfs-")
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(archive.finish())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise LabError(f"cannot write the guest initramfs in {CACHE_DIR}: {exc}") from exc
    for old in CACHE_DIR.glob("initramfs-*.cpio.gz"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


class _Cpio:
    """A minimal writer of the "newc" cpio format, the only one the kernel's initramfs unpacker
    reads: a 110-byte ASCII header per entry, name and data each padded to 4 bytes."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", *, rdev: tuple[int, int] = (0, 0)) -> None:
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._ino += 1
        self._buf.write(b"070701" + "".join(f"{f:08x}" for f in fields).encode())
        self._buf.write(name.encode() + b"\0")
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\0" * (-self._buf.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self._buf.getvalue()
