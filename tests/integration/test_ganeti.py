"""A QEMU started the way Ganeti starts it, adopted, hotplugged and live-migrated to a kvmhv.qemu target.

The runtime file is what a Ganeti 3.0 node holds after migrating in a VM
that Ganeti 2.9 started and 2.15 hotplugged a NIC into (Ganeti saves the
source's text as it was): three-digit integers in kvm_cmd, -balloon,
-localtime, -usbdevice, the disk still a -drive inside kvm_cmd, the first NIC
placed by QEMU (no pci), the hotplugged NIC and a disk at integer pci slots.
``ganeti_launcher`` starts it like that node would. Everything runs in a
network namespace the test creates (bridge 10.75.0.1/16); migration goes over
TCP on its loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from ansible_cli import run_module, run_playbook
from ganeti_launcher import SerialPump
from guest_report import KERNEL_ARGS, guest_dir, latest_report, wait_for_report
from helpers import alive, files_of, q, tcp_uri

NAME = "gnt1.example.org"
BRIDGE = "gntbr0"
NIC0, NIC1, HOTNIC = "52:54:00:4b:00:21", "52:54:00:4b:00:22", "52:54:00:12:34:77"
NIC0_UUID, NIC1_UUID, DISK1_UUID = ("3b9e1c2d-7f6a-4e5b-8c9d-112233445566", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                                    "44444444-5555-4666-8777-888888888888")
INSTANCE_UUID = "0f7b3c1e-2a44-4d0b-8f3e-6c1d2b3a4f50"
HERE = Path(__file__).parent
FIXTURES = HERE.parent / "unit" / "plugins" / "module_utils" / "store" / "ganeti" / "fixtures"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns():
    """A network namespace with the bridge the runtime's NICs name (10.75.0.1/16, the guest's test network)."""
    name = f"kvg-{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    ip("netns", "add", name)
    for args in (("link", "set", "lo", "up"), ("link", "add", BRIDGE, "type", "bridge"),
                 ("addr", "add", "10.75.0.1/16", "dev", BRIDGE), ("link", "set", BRIDGE, "up")):
        ip("-n", name, *args)
    yield name
    for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], check=False)


class GanetiNode:
    """A Ganeti node's run directory: conf/, pid/, ctrl/ and instance-disks/ (short paths: sockets live there)."""

    def __init__(self, make_disk) -> None:
        self.root = tempfile.mkdtemp(prefix="gnt-", dir="/tmp")
        self.hv = f"{self.root}/kvm-hypervisor"
        for sub in ("conf", "pid", "ctrl"):
            os.makedirs(f"{self.hv}/{sub}", mode=0o755)
        os.makedirs(f"{self.root}/instance-disks")
        self.make_disk = make_disk
        self.runtime = f"{self.hv}/conf/{NAME}.runtime"
        self.pidfile = f"{self.hv}/pid/{NAME}"
        self.qmp = f"{self.hv}/ctrl/{NAME}.qmp"
        self.serial_log = f"{self.root}/serial.log"

    def link(self, idx: int, size_mib: int) -> str:
        path = f"{self.root}/instance-disks/{NAME}:{idx}"
        os.symlink(self.make_disk(f"gnt-{idx}.img", size_mib), path)
        return path

    def write_runtime(self, nics: bool = True) -> list:
        """The runtime file as the Ganeti 3.0 node holds it (2.15's text), mode 0600."""
        guest = guest_dir()
        ctrl = f"{self.hv}/ctrl/{NAME}"
        kvm_cmd = ["/usr/bin/qemu-system-x86_64", "-name", NAME, "-m", 256, "-smp", "1", "-pidfile", self.pidfile,
                   "-balloon", "virtio", "-daemonize", "-machine", "pc-i440fx-7.2,accel=tcg", "-boot", "c",
                   "-drive", f"file={self.link(0, 2)},format=raw,if=virtio", "-kernel", f"{guest}/vmlinuz",
                   "-initrd", f"{guest}/initrd.img", "-append", KERNEL_ARGS,
                   "-monitor", f"unix:{ctrl}.monitor,server,nowait", "-serial", f"unix:{ctrl}.serial,server,nowait",
                   "-usb", "-usbdevice", "tablet", "-display", "none", "-localtime", "-uuid", INSTANCE_UUID]
        nic_list = [{"name": "eth0", "mac": NIC0, "nicparams": {"mode": "bridged", "link": BRIDGE}, "uuid": NIC0_UUID},
                    {"mac": NIC1, "nicparams": {"mode": "bridged", "link": BRIDGE, "vlan": ""}, "uuid": NIC1_UUID, "pci": 6}]
        hvparams = {"kvm_path": "/usr/bin/qemu-system-x86_64", "nic_type": "paravirtual", "disk_type": "paravirtual",
                    "usb_mouse": "tablet", "use_localtime": True, "kernel_path": f"{guest}/vmlinuz", "serial_console": True,
                    "machine_version": "pc-i440fx-7.2", "kvm_flag": "disabled", "security_model": "none",
                    "migration_port": 8102, "vhost_net": False, "virtio_net_queues": 1, "disk_cache": "default"}
        disks = [[{"dev_type": "plain", "logical_id": ["xenvg", f"{DISK1_UUID}.disk1"], "iv_name": "disk/1", "size": 3,
                   "mode": "rw", "params": {"stripes": 1}, "uuid": DISK1_UUID, "serial_no": 1, "ctime": 1420000000.5,
                   "mtime": 1420000000.5, "pci": 7}, self.link(1, 3), None]]
        data = [kvm_cmd, nic_list if nics else [], hvparams, disks]
        fd = os.open(self.runtime, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data) + "\n")
        return data

    def write_scsi_runtime(self) -> list:
        """A Ganeti 3.0 runtime with disk_type scsi-hd: the controller in kvm_cmd, SCSI hvinfo, a NIC at 0xd."""
        guest = guest_dir()
        ctrl = f"{self.hv}/ctrl/{NAME}"
        kvm_cmd = ["/usr/bin/qemu-system-x86_64", "-name", NAME, "-m", 256, "-smp", "1", "-pidfile", self.pidfile,
                   "-device", "lsi,id=scsi", "-device", "virtio-balloon", "-daemonize", "-D", f"{self.root}/qemu.log",
                   "-machine", "pc-i440fx-7.2,accel=tcg", "-kernel", f"{guest}/vmlinuz", "-initrd", f"{guest}/initrd.img",
                   "-append", KERNEL_ARGS, "-monitor", f"unix:{ctrl}.monitor,server,nowait",
                   "-serial", f"unix:{ctrl}.serial,server,nowait", "-usb", "-display", "none", "-uuid", INSTANCE_UUID]
        nic_list = [{"name": "eth0", "mac": NIC0, "nicparams": {"mode": "bridged", "link": BRIDGE, "vlan": ""}, "uuid": NIC0_UUID,
                     "hvinfo": {"driver": "virtio-net-pci", "id": "nic-3b9e1c2d-7f6a-4e5b", "bus": "pci.0", "addr": "0xd"}}]
        hvparams = {"kvm_path": "/usr/bin/qemu-system-x86_64", "nic_type": "paravirtual", "disk_type": "scsi-hd",
                    "scsi_controller_type": "lsi", "kvm_pci_reservations": 12, "disk_discard": "default", "use_guest_agent": False}
        disks = [[{"dev_type": "plain", "logical_id": ["xenvg", f"{DISK1_UUID}.disk0"], "iv_name": "disk/0", "size": 2,
                   "mode": "rw", "params": {"stripes": 1}, "uuid": DISK1_UUID,
                   "hvinfo": {"driver": "scsi-hd", "id": "disk-44444444-5555-4666", "bus": "scsi.0", "channel": 0,
                              "scsi-id": 0, "lun": 0}}, self.link(0, 2), None]]
        data = [kvm_cmd, nic_list, hvparams, disks]
        fd = os.open(self.runtime, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data) + "\n")
        return data

    def write_ide_runtime(self) -> list:
        """A Ganeti 2.9 runtime (three elements): IDE disks as -drive options before a CD-ROM, an e1000 NIC without uuid."""
        guest = guest_dir()
        ctrl = f"{self.hv}/ctrl/{NAME}"
        os.chmod(self.root, 0o755)  # the CD image is opened by QEMU itself, by path, also on the target
        iso = f"{self.root}/cd.iso"
        shutil.copy(self.make_disk("cd.iso", 1), iso)
        os.chmod(iso, 0o644)
        kvm_cmd = ["/usr/bin/qemu-system-x86_64", "-name", NAME, "-m", 256, "-smp", "1", "-pidfile", self.pidfile, "-daemonize",
                   "-machine", "pc-i440fx-7.2,accel=tcg", "-boot", "c",
                   "-drive", f"file={self.link(0, 2)},format=raw,if=ide,cache=none",
                   "-drive", f"file={self.link(1, 3)},format=raw,if=ide,cache=writethrough",
                   "-drive", f"file={iso},media=cdrom,format=raw,if=ide",
                   "-kernel", f"{guest}/vmlinuz", "-initrd", f"{guest}/initrd.img", "-append", KERNEL_ARGS,
                   "-monitor", f"unix:{ctrl}.monitor,server,nowait", "-serial", f"unix:{ctrl}.serial,server,nowait",
                   "-usb", "-usbdevice", "tablet", "-display", "none", "-localtime"]
        nic_list = [{"mac": NIC0, "nicparams": {"mode": "bridged", "link": BRIDGE}}]
        hvparams = {"kvm_path": "/usr/bin/qemu-system-x86_64", "nic_type": "e1000", "disk_type": "ide", "disk_cache": "none"}
        data = [kvm_cmd, nic_list, hvparams]
        fd = os.open(self.runtime, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data) + "\n")
        return data

    def start(self, ns: str) -> int:
        """Start QEMU like the Ganeti node (in ``ns``) and copy its serial console to ``serial_log``."""
        out = subprocess.run(["ip", "netns", "exec", ns, os.environ.get("PYTHON", "python3"), str(HERE / "ganeti_launcher.py"),
                              self.runtime, f"{self.hv}/ctrl"], check=True, capture_output=True, text=True, timeout=120)
        pid = int(out.stdout.split()[-1])
        SerialPump(f"{self.hv}/ctrl/{NAME}.serial", self.serial_log).start()
        return pid

    def adopt_args(self, runtime_dir: str, **extra) -> dict:
        return {"name": NAME, "runtime_dir": runtime_dir,
                "adopt": {"runtime": self.runtime, "qmp": self.qmp, "pidfile": self.pidfile}, **extra}

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ganeti_node(make_disk):
    node = GanetiNode(make_disk)
    yield node
    node.cleanup()


def device_tree(sock: str) -> list[str]:
    """QEMU's device tree (``info qtree``): every device as its path of buses and devices, with its address.

    Sorted, because QEMU lists devices in the order it created them, which
    may differ; backend names (drive, netdev, chardev), MACs and other
    properties are left out: what has to match is which device sits where.
    """
    text = q(sock, "human-monitor-command", {"command-line": "info qtree"})
    stack: list[tuple[int, str]] = []
    devices: list[str] = []
    for line in text.splitlines():
        found = re.match(r"^(\s*)((?:dev|bus): .*)$", line)
        if found:
            indent = len(found[1])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, found[2]))
            if found[2].startswith("dev:"):
                devices.append(" / ".join(label for _i, label in stack))
        elif re.match(r"^\s*(addr|unit|scsi-id|port) = ", line) and devices:
            devices[-1] += f" @ {line.strip()}"
    return sorted(devices)


def one_line(result: dict, *words: str) -> None:
    assert result.get("failed"), result
    assert "\n" not in result["msg"] and "Traceback" not in result["msg"], result["msg"]
    for word in words:
        assert word in result["msg"], result["msg"]


def test_adopt_hotplug_and_live_migrate_a_qemu_ganeti_started(runtime_dir, tmp_path, make_disk, netns, ganeti_node):
    node = ganeti_node
    node.write_runtime()
    pid = node.start(netns)
    seen = wait_for_report(node.serial_log, lambda r: len(r.block) == 2 and r.macs() == {NIC0, NIC1}, 120)
    source_tree = device_tree(node.qmp)
    ganeti_runtime = Path(node.runtime).read_bytes()

    adopted = run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns, diff=True)
    assert adopted["changed"] is True, adopted
    inst = adopted["instance"]
    assert inst["pid"] == pid and inst["status"] == "running" and inst["qmp_socket"] == node.qmp
    assert [(n["id"], n["hvinfo"]["addr"]) for n in inst["nics"]] == [("hotnic-1a2b3c4d-pci-6", "0x6")]
    assert [(d["id"], d["hvinfo"]["addr"]) for d in inst["disks"]] == [("hotdisk-44444444-pci-7", "0x7")]
    assert any("-balloon" in n for n in adopted["notes"]) and any("window moved" in n for n in adopted["notes"])
    assert run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns)["changed"] is False
    assert files_of(runtime_dir, NAME) == [f"{NAME}.lock", f"{NAME}.runtime.json"]  # no socket or pid file of ours
    assert device_tree(node.qmp) == source_tree and alive(pid)  # QEMU was not touched

    info = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir}, netns=netns)["instance"]
    assert info["alive"] and info["pid"] == pid and info["drift"] == [], info["drift"]
    assert [f["kind"] for f in info["runtime"]["fixed"]] == ["nic", "disk"]
    assert info["runtime"]["hvparams"]["machine_type"] == "pc-i440fx-7.2" and info["runtime"]["hvparams"]["accel"] == "tcg"
    assert info["bus"]["pci"]["window"][0] == "0x06" and info["bus"]["pci"]["free"][0] == "0x08"

    back = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir, "export": "ganeti-2"}, netns=netns)
    kvm_cmd, nics, _hv, disks = back["instance"]["exported"]  # as Ganeti 2.15 wrote it, plumbing included
    assert [n.get("pci") for n in nics] == [None, 6] and [d[0]["pci"] for d in disks] == [7] and kvm_cmd[kvm_cmd.index("-m") + 1] == 256
    assert node.pidfile in kvm_cmd and f"file={node.root}/instance-disks/{NAME}:0,format=raw,if=virtio" in kvm_cmd

    disk = run_module("kvm_disk_hotplug", {"instance": NAME, "runtime_dir": runtime_dir, "disk": {"path": make_disk("hot.img", 4)}},
                      netns=netns)
    assert disk["changed"] is True and disk["device"]["hvinfo"]["addr"] == "0x8", disk
    nic = run_module("kvm_nic_hotplug", {"instance": NAME, "runtime_dir": runtime_dir,
                                         "nic": {"mac": HOTNIC, "network": {"type": "user"}}}, netns=netns)
    assert nic["changed"] is True and nic["device"]["hvinfo"]["addr"] == "0x9", nic
    placed = run_module("kvm_nic_hotplug", {"instance": NAME, "runtime_dir": runtime_dir, "nic": {"mac": NIC0}, "state": "absent"},
                        netns=netns)
    one_line(placed, "placed by QEMU itself")
    seen = wait_for_report(node.serial_log, lambda r: set(r.disks_by_size()) == {4096, 6144, 8192} and r.macs() == {NIC0, NIC1, HOTNIC},
                           60, after_seq=seen.seq)
    # a device Ganeti plugged (its -drive backend, its legacy id) unplugs like any other
    unplugged = run_module("kvm_disk_hotplug", {"instance": NAME, "runtime_dir": runtime_dir, "disk": {"uuid": DISK1_UUID},
                                                "state": "absent"}, netns=netns)
    assert unplugged["changed"] is True and unplugged["device"]["id"] == "hotdisk-44444444-pci-7", unplugged
    seen = wait_for_report(node.serial_log, lambda r: set(r.disks_by_size()) == {4096, 8192}, 60, after_seq=seen.seq)
    info = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir}, netns=netns)["instance"]
    assert info["drift"] == [], info["drift"]
    one_line(run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir, "export": "ganeti-2"}, netns=netns),
             "cannot export to Ganeti 2.x", "would be called hotdisk-")
    back = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir, "export": "ganeti-3"}, netns=netns)
    assert [d[0]["hvinfo"]["addr"] for d in back["instance"]["exported"][3]] == ["0x8"]
    source_tree = device_tree(node.qmp)

    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": info["runtime_file"], "migration_uri": uri}, netns=netns)
    assert tgt["changed"] is True and tgt["instance"]["status"] == "incoming", tgt
    try:
        assert device_tree(tgt["instance"]["qmp_socket"]) == source_tree  # the same device tree, before any state moves
        moved = run_module("kvm_migrate", {"name": NAME, "runtime_dir": runtime_dir, "target_uri": uri}, netns=netns)
        assert moved["changed"] is True and moved["migration"]["status"] == "completed", moved
        assert not alive(pid) and files_of(runtime_dir, NAME) == []
        log = tgt["instance"]["serial_log"]
        after = wait_for_report(log, lambda r: r.pings_ok() and len(r.pings_ok()) == 2, 90,
                                after_seq=(latest_report(log) or seen).seq)
        assert after.block == seen.block and after.net == seen.net
        info = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": target_dir}, netns=netns)["instance"]
        assert info["alive"] and info["drift"] == [] and "adopted" not in info["runtime"], info
        assert info["runtime"]["fixed"][0]["network"]["bridge"] == BRIDGE
        # Ganeti's runtime file and disk links are left as they were (QEMU itself removed its sockets and pid file)
        assert Path(node.runtime).read_bytes() == ganeti_runtime and os.path.islink(f"{node.root}/instance-disks/{NAME}:0")
    finally:
        run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "absent"}, netns=netns)


def test_adopt_and_migrate_a_ganeti_scsi_instance(runtime_dir, tmp_path, make_disk, netns, ganeti_node):
    """disk_type scsi-hd: the controller Ganeti keeps in kvm_cmd stays where QEMU placed it; a SCSI hotplug, a migration."""
    node = ganeti_node
    node.write_scsi_runtime()
    pid = node.start(netns)
    seen = wait_for_report(node.serial_log, lambda r: len(r.scsi) == 1 and r.macs() == {NIC0}, 120)
    adopted = run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns)
    assert adopted["changed"] is True, adopted.get("msg")
    disk = run_module("kvm_disk_hotplug", {"instance": NAME, "runtime_dir": runtime_dir, "disk": {"path": make_disk("hot.img", 3)}},
                      netns=netns)
    assert disk["changed"] is True and (disk["device"]["hvinfo"]["bus"], disk["device"]["hvinfo"]["scsi-id"]) == ("scsi.0", 1), disk
    seen = wait_for_report(node.serial_log, lambda r: set(r.disks_by_size()) == {4096, 6144}, 60, after_seq=seen.seq)
    source_tree = device_tree(node.qmp)
    info = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir}, netns=netns)["instance"]
    assert info["drift"] == [] and [c["hvinfo"]["id"] for c in info["runtime"]["controllers"]] == ["scsi"], info
    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": info["runtime_file"], "migration_uri": uri}, netns=netns)
    assert tgt["changed"] is True, tgt
    try:
        assert device_tree(tgt["instance"]["qmp_socket"]) == source_tree
        moved = run_module("kvm_migrate", {"name": NAME, "runtime_dir": runtime_dir, "target_uri": uri}, netns=netns)
        assert moved["changed"] is True and moved["migration"]["status"] == "completed", moved
        assert not alive(pid)
        log = tgt["instance"]["serial_log"]
        after = wait_for_report(log, lambda r: True, 60, after_seq=(latest_report(log) or seen).seq)
        assert after.block == seen.block and after.scsi == seen.scsi and after.net == seen.net
    finally:
        run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "absent"}, netns=netns)


def test_a_qemu_started_from_a_three_element_runtime_migrates_with_its_ide_drives(runtime_dir, tmp_path, netns, ganeti_node):
    """Ganeti before 2.10: no disk list, IDE -drive disks in kvm_cmd before a CD-ROM (QEMU numbers them in that order),
    a NIC without uuid or address. Everything is placed by QEMU, and the target places it the same way."""
    node = ganeti_node
    node.write_ide_runtime()
    pid = node.start(netns)
    seen = wait_for_report(node.serial_log, lambda r: r.macs() == {NIC0}, 120)
    adopted = run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns)
    assert adopted["changed"] is True, adopted.get("msg")
    assert any("derived from its MAC" in n for n in adopted["notes"]) and adopted["instance"]["disks"] == []
    info = run_module("kvm_instance_info", {"name": NAME, "runtime_dir": runtime_dir}, netns=netns)["instance"]
    fixed = info["runtime"]["fixed"]
    assert [(f["kind"], f.get("driver"), f.get("render"), f.get("uuid_from_mac")) for f in fixed] == [
        ("nic", "e1000", None, True), ("disk", None, "drive", None), ("disk", None, "drive", None)]
    source_tree = device_tree(node.qmp)
    target_dir = str(tmp_path / "hv2")
    uri = tcp_uri()
    tgt = run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": info["runtime_file"], "migration_uri": uri}, netns=netns)
    assert tgt["changed"] is True, tgt
    try:
        assert device_tree(tgt["instance"]["qmp_socket"]) == source_tree
        target_blocks = {b["device"]: (b.get("inserted") or {}).get("file") for b in q(tgt["instance"]["qmp_socket"], "query-block")}
        assert target_blocks["ide0-hd0"].startswith("/dev/fdset/") and target_blocks["ide1-cd0"] == f"{node.root}/cd.iso"
        moved = run_module("kvm_migrate", {"name": NAME, "runtime_dir": runtime_dir, "target_uri": uri}, netns=netns)
        assert moved["changed"] is True and moved["migration"]["status"] == "completed", moved
        assert not alive(pid)
        log = tgt["instance"]["serial_log"]
        after = wait_for_report(log, lambda r: r.pings_ok() == set(r.net), 90, after_seq=(latest_report(log) or seen).seq)
        assert after.net == seen.net
    finally:
        run_module("kvm_instance", {"name": NAME, "runtime_dir": target_dir, "state": "absent"}, netns=netns)


def test_adopt_refuses_a_mismatch_then_stops_and_removes_only_its_own_files(runtime_dir, netns, ganeti_node):
    node = ganeti_node
    data = node.write_runtime()
    before = Path(node.runtime).read_bytes()
    pid = node.start(netns)
    wait_for_report(node.serial_log, lambda r: len(r.block) == 2, 120)
    tampered = f"{node.hv}/conf/tampered.runtime"
    data[1][1]["pci"] = 9  # Ganeti's file says slot 9, QEMU has the NIC at 6
    data[2]["nic_type"] = "e1000"
    Path(tampered).write_text(json.dumps(data))
    os.chmod(tampered, 0o600)
    wrong = run_module("kvm_instance", {**node.adopt_args(runtime_dir), "adopt": {"runtime": tampered, "qmp": node.qmp,
                                                                                  "pidfile": node.pidfile}}, netns=netns)
    one_line(wrong, "does not match the QEMU running as pid", "hotnic-1a2b3c4d-pci-9", "QEMU has virtio-net-pci hotnic-1a2b3c4d-pci-6")
    assert files_of(runtime_dir, NAME) in ([], [f"{NAME}.lock"])

    planned = run_module("kvm_instance", node.adopt_args(runtime_dir), check=True, netns=netns)
    assert planned["changed"] is True and not Path(runtime_dir, f"{NAME}.runtime.json").exists(), planned
    assert run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns)["changed"] is True
    other = run_module("kvm_instance", {**node.adopt_args(runtime_dir), "state": "absent"}, netns=netns)
    one_line(other, "adopt takes over a running QEMU")

    stopped = run_module("kvm_instance", {"name": NAME, "runtime_dir": runtime_dir, "state": "stopped", "shutdown_timeout": 60},
                         netns=netns)
    assert stopped["changed"] is True and not alive(pid), stopped
    rt = json.loads(Path(runtime_dir, f"{NAME}.runtime.json").read_text())
    assert rt["mark"] == "stopped" and "adopted" not in rt
    # Ganeti's files are Ganeti's (QEMU itself removed its pid file and sockets when it exited)
    assert Path(node.runtime).read_bytes() == before and os.path.islink(f"{node.root}/instance-disks/{NAME}:0")
    gone = run_module("kvm_instance", {"name": NAME, "runtime_dir": runtime_dir, "state": "absent"}, netns=netns)
    assert gone["changed"] is True and files_of(runtime_dir, NAME) == [] and Path(node.runtime).read_bytes() == before


def test_absent_on_an_adopted_instance_stops_its_qemu(runtime_dir, netns, ganeti_node):
    node = ganeti_node
    node.write_runtime(nics=False)
    before = Path(node.runtime).read_bytes()
    pid = node.start(netns)
    adopted = run_module("kvm_instance", node.adopt_args(runtime_dir), netns=netns)
    assert adopted["changed"] is True, adopted["msg"]
    gone = run_module("kvm_instance", {"name": NAME, "runtime_dir": runtime_dir, "state": "absent"}, netns=netns)
    assert gone["changed"] is True and not alive(pid) and files_of(runtime_dir, NAME) == []
    assert Path(node.runtime).read_bytes() == before  # only this collection's files went


def test_info_reads_every_ganeti_layout_without_a_python_error():
    """Every fixture through a real ansible run: read, upgraded, notes, never a traceback."""
    fixtures = sorted(FIXTURES.glob("*.json"))
    assert len(fixtures) >= 17
    res = run_playbook([{"name": f.stem, "kvmhv.qemu.kvm_instance_info": {"path": str(f)}} for f in fixtures])
    assert res["rc"] == 0, res["stderr"]
    for name, _host, result in res["tasks"]:
        inst = result["instance"]
        assert not result.get("failed") and inst["format_version"] == 0 and inst["current_version"] == 2, (name, result)
        assert inst["notes"] and inst["runtime"]["kvm_cmd"][-2:] == ["-net", "none"], name
        assert all(isinstance(a, str) for a in inst["runtime"]["kvm_cmd"]), name
