"""Hotplug and unplug through real ansible runs; the guest must see every change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ansible_cli import run_module, run_playbook
from guest_report import guest_hvparams, wait_for_report
from helpers import assert_matches_runtime, block_nodes, pci_slots, read_rt


def boot(runtime_dir: str, name: str, make_disk, **hv) -> dict:
    res = run_module("kvm_instance", {"name": name, "runtime_dir": runtime_dir, "disks": [{"path": make_disk(f"{name}-boot.img", 2)}],
                                      "hvparams": guest_hvparams(**hv)})
    assert res["changed"] is True, res
    wait_for_report(res["instance"]["serial_log"], lambda r: len(r.block) == 1)
    return res["instance"]


def rt_of(inst: dict) -> dict:
    return read_rt(inst["runtime_file"])


@pytest.fixture
def bridge():
    name = "kvtbr0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


def test_virtio_disks_and_tap_nic(runtime_dir, make_disk, bridge):
    inst = boot(runtime_dir, "hp1", make_disk)
    log, sock = inst["serial_log"], inst["qmp_socket"]

    def disk(name: str, size: int = 3, **extra) -> dict:
        """Module args for disk ``name`` (created with ``size`` MiB; size 0: an existing path)."""
        return {"instance": "hp1", "runtime_dir": runtime_dir, "disk": {"path": make_disk(name, size) if size else name}, **extra}

    runtime_file = Path(inst["runtime_file"])

    before = runtime_file.read_bytes()
    plan = run_module("kvm_disk_hotplug", disk("h1.img", 3), check=True, diff=True)
    assert plan["changed"] is True and plan["device"]["hvinfo"]["addr"] == "0x11"
    assert "0x11" in plan["diff"]["after"] and "0x11" not in plan["diff"]["before"]
    assert runtime_file.read_bytes() == before and 0x11 not in pci_slots(sock)

    h1 = run_module("kvm_disk_hotplug", disk("h1.img", 3))
    assert h1["changed"] is True and h1["device"] == plan["device"], h1
    wait_for_report(log, lambda r: r.disks_by_size().get(6144) == "vdb", 15)
    assert run_module("kvm_disk_hotplug", disk("h1.img", 0))["changed"] is False
    h2 = run_module("kvm_disk_hotplug", disk("h2.img", 4))
    assert h2["device"]["hvinfo"]["addr"] == "0x12"

    net = {"type": "tap", "ifname": "kvt-hp1", "bridge": bridge}
    nic = {"instance": "hp1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:04:01", "network": net}}
    n1 = run_module("kvm_nic_hotplug", nic)
    assert n1["changed"] is True and n1["device"]["hvinfo"] == {"driver": "virtio-net-pci", "id": n1["device"]["id"], "bus": "pci.0", "addr": "0x13"}, n1
    wait_for_report(log, lambda r: "52:54:00:00:04:01" in r.macs(), 15)
    assert f"master {bridge}" in subprocess.run(["ip", "link", "show", "kvt-hp1"], capture_output=True, text=True, check=True).stdout
    assert run_module("kvm_nic_hotplug", nic)["changed"] is False
    assert_matches_runtime(sock, rt_of(inst))

    gone = run_module("kvm_disk_hotplug", disk(h1["invocation"]["module_args"]["disk"]["path"], 0, state="absent"))
    assert gone["changed"] is True and gone["device"]["id"] == h1["device"]["id"]
    wait_for_report(log, lambda r: 6144 not in r.disks_by_size(), 15)
    assert h1["device"]["id"] not in block_nodes(sock) and 0x11 not in pci_slots(sock)
    assert run_module("kvm_disk_hotplug", disk(h1["invocation"]["module_args"]["disk"]["path"], 0, state="absent"))["changed"] is False

    h3 = run_module("kvm_disk_hotplug", disk("h3.img", 5))
    assert h3["device"]["hvinfo"]["addr"] == "0x11"  # the hole is reused
    wait_for_report(log, lambda r: 10240 in r.disks_by_size(), 15)

    off = run_module("kvm_nic_hotplug", {**nic, "state": "absent", "nic": {"mac": "52:54:00:00:04:01"}})
    assert off["changed"] is True, off
    wait_for_report(log, lambda r: "52:54:00:00:04:01" not in r.macs(), 15)
    assert subprocess.run(["ip", "link", "show", "kvt-hp1"], capture_output=True, check=False).returncode != 0  # we created it: gone
    rt = rt_of(inst)
    assert [d["hvinfo"]["addr"] for d in rt["disks"]] == ["0x10", "0x12", "0x11"] and rt["nics"] == []
    assert_matches_runtime(sock, rt)
    assert run_module("kvm_instance_info", {"name": "hp1", "runtime_dir": runtime_dir})["instance"]["drift"] == []
    run_module("kvm_instance", {"name": "hp1", "runtime_dir": runtime_dir, "state": "absent"})


@pytest.mark.parametrize("controller", ["lsi", "megasas", "virtio-scsi-pci"])
def test_scsi_disk_on_each_controller(runtime_dir, make_disk, controller):
    inst = boot(runtime_dir, "hs1", make_disk, disk_type="scsi-hd", scsi_controller_type=controller)
    log, sock = inst["serial_log"], inst["qmp_socket"]
    args = {"instance": "hs1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("s1.img", 3)}}
    plugged = run_module("kvm_disk_hotplug", args)
    assert plugged["changed"] is True, plugged
    info = plugged["device"]["hvinfo"]
    assert info == {"driver": "scsi-hd", "id": info["id"], "bus": "scsi.0", "channel": 0, "scsi-id": 1, "lun": 0}
    report = wait_for_report(log, lambda r: 6144 in r.disks_by_size(), 15)
    assert report.block[report.disks_by_size()[6144]].hctl.split(":")[2] == "1"
    assert info["id"] not in {d["qdev_id"] for d in pci_slots(sock).values()}  # no PCI device for a SCSI disk
    assert_matches_runtime(sock, rt_of(inst))
    removed = run_module("kvm_disk_hotplug", {**args, "state": "absent"})
    assert removed["changed"] is True and info["id"] not in block_nodes(sock)
    if controller == "virtio-scsi-pci":  # only virtio-scsi tells the guest about a removal
        wait_for_report(log, lambda r: 6144 not in r.disks_by_size(), 15)
    again = run_module("kvm_disk_hotplug", {**args, "disk": {"path": make_disk("s2.img", 4)}})
    assert again["device"]["hvinfo"]["scsi-id"] == 1
    assert_matches_runtime(sock, rt_of(inst))
    run_module("kvm_instance", {"name": "hs1", "runtime_dir": runtime_dir, "state": "absent"})


def test_limits_and_ide(runtime_dir, make_disk):
    paused = {"accel": "tcg", "kvm_extra": "-S"}
    lsi = run_module("kvm_instance", {"name": "full1", "runtime_dir": runtime_dir, "hvparams": {**paused, "disk_type": "scsi-hd"},
                                      "disks": [{"path": make_disk(f"f{i}.img")} for i in range(6)]})
    assert lsi["changed"] is True
    seventh = run_module("kvm_disk_hotplug", {"instance": "full1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("f6.img")}})
    assert seventh["device"]["hvinfo"]["scsi-id"] == 6
    # the controller is full: the next disk comes with a second controller, hot-added first
    eighth = run_module("kvm_disk_hotplug", {"instance": "full1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("f7.img")}})
    assert eighth["changed"] is True and eighth["device"]["hvinfo"]["bus"] == "scsi1.0", eighth
    rt = read_rt(lsi["instance"]["runtime_file"])
    assert [c["hvinfo"]["id"] for c in rt["controllers"] if c["kind"] == "scsi"] == ["scsi", "scsi1"]
    assert_matches_runtime(lsi["instance"]["qmp_socket"], rt)

    pci = run_module("kvm_instance", {"name": "full2", "runtime_dir": runtime_dir,
                                      "hvparams": {**paused, "kvm_pci_reservations": 31, "pci_hotplug_slots": 0},
                                      "disks": [{"path": make_disk("p0.img")}]})
    assert pci["instance"]["disks"][0]["hvinfo"]["addr"] == "0x1f"
    before = Path(pci["instance"]["runtime_file"]).read_bytes()
    full = run_module("kvm_nic_hotplug", {"instance": "full2", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:05:01"}})
    assert full.get("failed") and "no free PCI slot" in full["msg"] and "pci_hotplug_slots=0" in full["msg"], full
    assert Path(pci["instance"]["runtime_file"]).read_bytes() == before

    ide = run_module("kvm_instance", {"name": "ide1", "runtime_dir": runtime_dir, "hvparams": {**paused, "disk_type": "ide"}})
    assert ide["changed"] is True
    refused = run_module("kvm_disk_hotplug", {"instance": "ide1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("i0.img")}})
    assert refused.get("failed") and "ide disks cannot be hotplugged" in refused["msg"], refused
    for name in ("full1", "full2", "ide1"):
        run_module("kvm_instance", {"name": name, "runtime_dir": runtime_dir, "state": "absent"})


def test_unplug_while_the_guest_boots(runtime_dir, make_disk):
    """A guest drops an ACPI unplug request that comes before its hotplug driver is up; the module asks
    again until the guest releases the NIC. One playbook: start, plug, unplug, with no wait for the boot."""
    args = {"instance": "hb1", "runtime_dir": runtime_dir, "nic": {"mac": "52:54:00:00:04:21", "network": {"type": "user"}}}
    run = run_playbook([
        {"name": "start", "kvmhv.qemu.kvm_instance": {"name": "hb1", "runtime_dir": runtime_dir,
                                                      "disks": [{"path": make_disk("hb1-boot.img", 2)}], "hvparams": guest_hvparams()}},
        {"name": "plug", "kvmhv.qemu.kvm_nic_hotplug": args},
        {"name": "unplug", "kvmhv.qemu.kvm_nic_hotplug": {**args, "state": "absent", "unplug_timeout": 60}},
    ])
    results = {name: result for name, _host, result in run["tasks"]}
    assert run["rc"] == 0, results
    assert results["unplug"]["changed"] is True, results["unplug"]
    inst = results["start"]["instance"]
    report = wait_for_report(inst["serial_log"], lambda r: len(r.block) == 1)
    assert "52:54:00:00:04:21" not in report.macs()
    slot = int(results["plug"]["device"]["hvinfo"]["addr"], 16)
    assert rt_of(inst)["nics"] == [] and slot not in pci_slots(inst["qmp_socket"])
    run_module("kvm_instance", {"name": "hb1", "runtime_dir": runtime_dir, "state": "absent"})
