"""The `vm` guest of the labs: a real libvirt/QEMU domain shaped like an OpenStack nova instance.

Why a real VM: the seed outages happen to nova instances, whose first hop is a tap that libvirt
creates (`vnetN`) and plugs into a Linux bridge. Only a real domain gives the target resolver real
domain XML to read (name `instance-XXXXXXXX`, nova metadata, live `<target dev='vnetN'/>`) and the
tracer a real tap with real guest frames on it.

How it runs here:
* libvirt has no systemd on these machines, so `ensure_libvirt` starts `virtlogd -d` and
  `libvirtd -d` itself (after creating what Debian's libvirt-daemon-system would: the libvirt-qemu
  user and /var/log/libvirt). The daemons are host services shared by all labs and are left
  running; only the domains are lab resources.
* The domain is `type='qemu'` (TCG): /dev/kvm exists but nested KVM hangs or aborts the guest.
* It is transient (`virsh create`): `virsh destroy` removes it completely and a host reboot leaves
  nothing behind, so a lost state file can never leave a defined domain around.
* The guest is only a kernel plus the initramfs of `tracer.lab.initramfs`, which keeps doing DHCP
  and ARP and reports on the serial console, logged to a file tests can watch (`wait_console`).
"""

from __future__ import annotations

import grp
import hashlib
import pwd
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from tracer.errors import EnvironmentMissing, LabError
from tracer.lab.initramfs import build_initramfs, guest_kernel
from tracer.lab.names import LabNames
from tracer.lab.shell import quiet, run
from tracer.lab.state import LabState

VIRSH = ("virsh", "-c", "qemu:///system")
NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
MARKER = "tracepath-l2 lab"
"""Start of every lab domain's <description>: destroy_domain only touches domains carrying it, so a
real nova instance that happens to share a name is never harmed."""
MEMORY_MIB = 256
CMDLINE = "console=ttyS0 quiet"
_UUID_NS = uuid.UUID("6f1c3a52-2b7e-4c1a-9d0e-7a3c2f4b8e11")
"""Namespace for the lab's derived UUIDs: same lab name, same UUIDs, on every host and run."""

DAEMON_LOG = Path("/var/log/libvirt/libvirtd.log")


def vm_domain_name(lab_name: str) -> str:
    """Nova's `instance-%08x` name: the default lab gets instance-00000347 (the seed outage's
    instance, so examples read like the original thread); other labs get a number derived from
    their name, never 0x347, so two labs can each run a VM."""
    if lab_name == "lab":
        return "instance-00000347"
    number = zlib.crc32(lab_name.encode()) & 0x0FFFFFFF
    if number == 0x347:
        number ^= 0x01000000
    return f"instance-{number:08x}"


def vm_mac(lab_name: str) -> str:
    """A MAC in fa:16:3e (the OUI neutron gives every port), stable per lab name, so findings and
    FDB entries from one run match the next."""
    tail = hashlib.sha256(f"vm-mac:{lab_name}".encode()).digest()[:3]
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def vm_uuid(lab_name: str) -> str:
    """The domain UUID, which is also the nova instance UUID: nova sets the libvirt domain's
    <uuid> to the instance's UUID (its <nova:instance> metadata carries no separate one)."""
    return str(uuid.uuid5(_UUID_NS, f"instance:{lab_name}"))


def domain_xml(
    *,
    name: str,
    dom_uuid: str,
    lab_name: str,
    bridge: str,
    mac: str,
    kernel: str,
    initrd: str,
    console_log: str,
    created: str = "1970-01-01 00:00:00",
) -> str:
    """The domain definition, pure so tests can check it without libvirt.

    Deliberately no <target dev=...> in <interface>: libvirt then names the tap vnetN itself, as it
    does on a real host when nova does not pick the name. The <metadata> block follows nova's
    libvirt driver (LibvirtConfigGuestMetaNovaInstance, namespace 1.1) so the target resolver can be
    exercised on the shape it meets on a compute node.

    The static DAC label with relabel='no' keeps QEMU running as libvirt-qemu but stops libvirt from
    chown-ing the kernel in /boot to that user for the VM's lifetime (the default: it restores the
    owner on destroy, so a killed libvirtd would leave /boot/vmlinuz-* owned by libvirt-qemu). QEMU
    only needs to read the kernel and initramfs (both 0644); libvirt opens the console log itself.
    """
    port_uuid = str(uuid.uuid5(_UUID_NS, f"port:{lab_name}"))
    user_uuid = str(uuid.uuid5(_UUID_NS, "user:tracepath-l2")).replace("-", "")
    project_uuid = str(uuid.uuid5(_UUID_NS, "project:tracepath-l2")).replace("-", "")
    a = quoteattr
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{dom_uuid}</uuid>
  <description>{escape(MARKER)} {escape(lab_name)}</description>
  <metadata>
    <nova:instance xmlns:nova="{NOVA_NS}">
      <nova:package version="27.1.0"/>
      <nova:name>tl2-{escape(lab_name)}-vm</nova:name>
      <nova:creationTime>{escape(created)}</nova:creationTime>
      <nova:flavor name="tl2.tiny">
        <nova:memory>{MEMORY_MIB}</nova:memory>
        <nova:disk>0</nova:disk>
        <nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral>
        <nova:vcpus>1</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="{user_uuid}">tracepath-l2</nova:user>
        <nova:project uuid="{project_uuid}">tracepath-l2</nova:project>
      </nova:owner>
      <nova:ports>
        <nova:port uuid="{port_uuid}"/>
      </nova:ports>
    </nova:instance>
  </metadata>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>{CMDLINE}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <interface type='bridge'>
      <source bridge={a(bridge)}/>
      <mac address={a(mac)}/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path={a(console_log)}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={a(console_log)}/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'>
    <label>libvirt-qemu:libvirt-qemu</label>
  </seclabel>
</domain>
"""


def ensure_libvirt(timeout: float = 60) -> None:
    """Make `virsh -c qemu:///system` answer, starting the daemons if needed. Idempotent.

    Without systemd nothing starts libvirt, and without Debian's libvirt-daemon-system nothing
    creates what it needs: libvirtd refuses the QEMU driver with "Failed to parse user
    'libvirt-qemu'", and both daemons exit at once when /var/log/libvirt is missing.
    """
    missing = [b for b in ("virsh", "libvirtd", "virtlogd", "qemu-system-x86_64") if not shutil.which(b)]
    if missing:
        raise EnvironmentMissing(
            f"libvirt/QEMU is not installed ({', '.join(missing)} missing); apt-get install "
            "libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86"
        )
    if _libvirt_answers():
        return
    _ensure_qemu_account()
    for d in ("/var/log/libvirt/qemu", "/var/lib/libvirt", "/var/cache/libvirt"):
        Path(d).mkdir(parents=True, exist_ok=True)
    # A second instance fails on its pid file lock, harmlessly: hence check=False.
    if not _daemon_running("virtlogd"):
        run(["virtlogd", "-d"], check=False, timeout=30)
    if not _daemon_running("libvirtd"):
        run(["libvirtd", "-d"], check=False, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _libvirt_answers():
            return
        time.sleep(0.5)
    raise LabError(f"libvirtd did not answer within {timeout:g}s; last log line: {_last_daemon_error()}")


def _libvirt_answers() -> bool:
    return quiet([*VIRSH, "version"], timeout=10)


def _daemon_running(comm: str) -> bool:
    """Whether a live process named `comm` exists. Zombies do not count: a daemon that was killed
    stays a zombie here until something reaps it, and must not stop us from starting a new one."""
    for p in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = p.read_text()  # "PID (COMM) STATE ..."; COMM may itself contain ") "
        except OSError:
            continue
        name, state = line[line.find("(") + 1 : line.rfind(")")], line[line.rfind(")") + 2 :][:1]
        if name == comm and state not in ("Z", "X"):
            return True
    return False


def _ensure_qemu_account() -> None:
    """Create the libvirt-qemu group and user (also in group kvm) as Debian's libvirt-daemon-system
    would: libvirt's QEMU driver runs QEMU as that user and will not start without it."""
    if not _exists(grp.getgrnam, "libvirt-qemu"):
        run(["groupadd", "--system", "libvirt-qemu"], check=False)
    if _exists(pwd.getpwnam, "libvirt-qemu"):
        return
    kvm = ["--groups", "kvm"] if _exists(grp.getgrnam, "kvm") else []
    useradd = "useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home"
    run([*useradd.split(), "--shell", "/usr/sbin/nologin", *kvm, "libvirt-qemu"], check=False)
    if not _exists(pwd.getpwnam, "libvirt-qemu"):  # check=False above: a concurrent setup may have won
        raise LabError("could not create the libvirt-qemu user that libvirt's QEMU driver needs")


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _last_daemon_error() -> str:
    try:
        lines = [ln for ln in DAEMON_LOG.read_text(errors="replace").splitlines() if " error : " in ln]
    except OSError:
        return f"({DAEMON_LOG} unreadable)"
    return lines[-1].split(" error : ", 1)[1] if lines else "(none)"


def domain_exists(name: str) -> bool:
    return quiet([*VIRSH, "domuuid", name], timeout=15)


def start_vm(state: LabState, *, bridge: str, lab_name: str) -> dict[str, str]:
    """Boot the lab's VM on `bridge` and return what a lab reports about it.

    The domain and its files are recorded in `state` before `virsh create`, so teardown finds them
    whatever happens next. A domain of the same name that already exists is refused, not replaced:
    it may belong to another lab, or (on a real compute node) to a real instance.
    """
    ensure_libvirt()
    kernel, _ = guest_kernel()
    initrd = build_initramfs()
    name = vm_domain_name(lab_name)
    if domain_exists(name):
        raise LabError(
            f"libvirt domain {name} already exists; `tracepath-l2 lab down --name {lab_name}`"
            f" or `virsh destroy {name}` first"
        )
    run_dir = Path(LabNames(lab_name).run_dir)
    console_log = run_dir / "vm-console.log"
    xml_file = run_dir / "vm-domain.xml"
    mac = vm_mac(lab_name)
    dom_uuid = vm_uuid(lab_name)
    xml = domain_xml(
        name=name,
        dom_uuid=dom_uuid,
        lab_name=lab_name,
        bridge=bridge,
        mac=mac,
        kernel=str(kernel),
        initrd=str(initrd),
        console_log=str(console_log),
        created=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    )
    state.add("paths", str(run_dir))
    state.add("paths", str(xml_file))
    state.add("paths", str(console_log))
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    xml_file.write_text(xml)
    console_log.unlink(missing_ok=True)
    state.add("domains", name)
    run([*VIRSH, "create", str(xml_file)], timeout=120)
    return {
        "domain": name,
        "uuid": dom_uuid,
        "nova_uuid": dom_uuid,
        "mac": mac,
        "tap": domain_tap(name, mac),
        "console_log": str(console_log),
    }


def domain_tap(name: str, mac: str) -> str:
    """The tap libvirt made for the interface with `mac`, from the live XML (`<target dev=>`)."""
    live = run([*VIRSH, "dumpxml", name], timeout=30).stdout
    tap = tap_from_xml(live, mac)
    if tap is None:
        raise LabError(f"domain {name} has no tap for {mac} in its live XML")
    return tap


def tap_from_xml(xml: str, mac: str) -> str | None:
    """`<target dev>` of the interface whose MAC is `mac`, or None."""
    for iface in ET.fromstring(xml).iterfind("./devices/interface"):
        m, t = iface.find("mac"), iface.find("target")
        if m is not None and t is not None and m.get("address", "").lower() == mac.lower():
            return t.get("dev")
    return None


def destroy_domain(name: str) -> None:
    """Stop and remove a lab domain. Idempotent, never raises: fine when the domain is absent or
    libvirt is not running (then no domain can be running either). Domains without the lab marker
    in their <description> are left alone."""
    try:
        proc = run([*VIRSH, "dumpxml", name], check=False, timeout=30)
        if proc.returncode != 0 or MARKER not in proc.stdout:
            return
        quiet([*VIRSH, "destroy", name], timeout=60)
        if quiet([*VIRSH, "dominfo", name], timeout=15):  # still there: it was persistent
            quiet([*VIRSH, "undefine", name], timeout=30)
    except Exception:  # noqa: BLE001 - teardown goes on whatever happens here
        return


def wait_console(path: str | Path, pattern: str, timeout: float) -> bool:
    """Poll the guest's console log until regex `pattern` matches somewhere in it (True) or
    `timeout` seconds pass (False). Polling a file is all a serial log offers, and the guest prints
    a line every few seconds, so 0.2 s steps cost nothing."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if regex.search(Path(path).read_text(errors="replace")):
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
