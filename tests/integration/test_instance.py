"""kvm_instance with real ansible runs, real QEMU (TCG) and the test guest."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.process import wait_exit
from ansible_cli import run_module
from guest_report import guest_hvparams, wait_for_report
from helpers import alive, assert_matches_runtime, files_of, pci_slots, read_rt


def rt_of(runtime_dir: str, name: str) -> dict:
    return read_rt(f"{runtime_dir}/{name}.runtime.json")


def test_lifecycle_virtio_disks(runtime_dir, make_disk):
    disks = [{"path": make_disk("d0.img", 2)}, {"path": make_disk("d1.img", 3)}]
    args = {"name": "vm1", "runtime_dir": runtime_dir, "disks": disks,
            "nics": [{"mac": "52:54:00:00:01:01", "network": {"type": "user"}}], "hvparams": guest_hvparams()}

    plan = run_module("kvm_instance", args, check=True)
    assert plan["changed"] is True and plan["instance"]["pid"] is None
    assert [d["hvinfo"]["addr"] for d in plan["instance"]["disks"] + plan["instance"]["nics"]] == ["0x10", "0x11", "0x12"]
    assert files_of(runtime_dir, "vm1") == []

    started = run_module("kvm_instance", args, diff=True)
    assert started["changed"] is True and started["instance"]["status"] == "running", started
    assert started["instance"]["disks"] == plan["instance"]["disks"]
    assert started["diff"]["after"]["memory"] == 256
    inst = started["instance"]
    report = wait_for_report(inst["serial_log"], lambda r: len(r.block) == 2 and len(r.net) == 1)
    assert report.disks_by_size() == {4096: "vda", 6144: "vdb"}  # disk/0 is the first disk
    assert report.macs() == {"52:54:00:00:01:01"}
    rt = rt_of(runtime_dir, "vm1")
    assert_matches_runtime(inst["qmp_socket"], rt)
    assert oct(os.stat(inst["qmp_socket"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(runtime_dir).st_mode & 0o777) == "0o700"

    again = run_module("kvm_instance", args)
    assert again["changed"] is False and again["instance"]["pid"] == inst["pid"]
    pending = run_module("kvm_instance", {**args, "memory": 384, "disks": disks[:1]})
    assert pending["changed"] is False
    assert "memory: 256 -> 384" in pending["pending"]
    assert pending["pending"] == ["memory: 256 -> 384"]
    assert any("kept (purge: false)" in w for w in pending["warnings"]), pending  # the second disk stays: no purge

    before_slots = {s: d["qdev_id"] for s, d in pci_slots(inst["qmp_socket"]).items()}
    stopped = run_module("kvm_instance", {**args, "state": "stopped", "shutdown_timeout": 20})
    assert stopped["changed"] is True and stopped["instance"]["status"] == "stopped"
    assert not alive(inst["pid"]) and "vm1.runtime.json" in files_of(runtime_dir, "vm1")
    assert run_module("kvm_instance", {**args, "state": "stopped"})["changed"] is False

    restarted = run_module("kvm_instance", args)
    assert restarted["changed"] is True and restarted["recovered"] is False
    assert restarted["instance"]["disks"] == inst["disks"] and restarted["instance"]["nics"] == inst["nics"]
    assert {s: d["qdev_id"] for s, d in pci_slots(inst["qmp_socket"]).items()} == before_slots

    hot = run_module("kvm_disk_hotplug", {"instance": "vm1", "runtime_dir": runtime_dir, "disk": {"path": make_disk("hot.img", 5)}})
    assert hot["device"]["hvinfo"]["addr"] == "0x13", hot
    os.kill(restarted["instance"]["pid"], 9)
    assert wait_exit(restarted["instance"]["pid"], 10)
    info = run_module("kvm_instance_info", {"name": "vm1", "runtime_dir": runtime_dir})["instance"]
    assert info["alive"] is False
    recovered = run_module("kvm_instance", args)
    assert recovered["changed"] is True and recovered["recovered"] is True
    assert recovered["instance"]["disks"] == [*inst["disks"], hot["device"]]  # exactly what ran, hotplug included
    assert pci_slots(inst["qmp_socket"])[0x13]["qdev_id"] == hot["device"]["id"]
    assert any("not applied" in w for w in recovered["warnings"])

    gone = run_module("kvm_instance", {**args, "state": "absent"})
    assert gone["changed"] is True
    assert files_of(runtime_dir, "vm1") == [] and not alive(recovered["instance"]["pid"])
    assert run_module("kvm_instance", {**args, "state": "absent"})["changed"] is False


@pytest.mark.parametrize("controller", ["lsi", "megasas", "virtio-scsi-pci"])
def test_scsi_disks_in_order_on_each_controller(runtime_dir, make_disk, controller):
    disks = [{"path": make_disk(f"s{i}.img", i + 2)} for i in range(3)]
    args = {"name": "sc1", "runtime_dir": runtime_dir, "disks": disks,
            "hvparams": guest_hvparams(disk_type="scsi-hd", scsi_controller_type=controller)}
    res = run_module("kvm_instance", args)
    assert res["changed"] is True, res
    inst = res["instance"]
    assert [d["hvinfo"]["scsi-id"] for d in inst["disks"]] == [0, 1, 2]
    assert all(d["hvinfo"]["bus"] == "scsi.0" for d in inst["disks"])
    report = wait_for_report(inst["serial_log"], lambda r: len(r.block) == 3)
    # SCSI names follow the guest's probe order; the target (H:C:T:L) is what the model fixes
    by_size = report.disks_by_size()
    assert [report.block[by_size[size]].hctl.split(":")[2] for size in (4096, 6144, 8192)] == ["0", "1", "2"]
    assert_matches_runtime(inst["qmp_socket"], rt_of(runtime_dir, "sc1"))
    assert run_module("kvm_instance", args)["changed"] is False
    assert run_module("kvm_instance", {**args, "state": "absent"})["changed"] is True
