"""More than one bus with the real guest: q35 root ports, pci-bridges, several SCSI controllers,
per-disk types, a CD whose medium changes live, pass-through disks on a real iSCSI target.

Disks get distinct sizes (disk i has i+1 MiB) so the guest's report says which is which.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_cli import run_module
from guest_report import guest_hvparams, wait_for_report
from helpers import assert_matches_runtime, read_rt, tcp_uri
from iscsi import Tgt


def images(make_disk, count: int, prefix: str = "d") -> list[str]:
    return [make_disk(f"{prefix}{i}.img", i + 1) for i in range(count)]


def sectors(count: int) -> set[int]:
    return {(i + 1) * 2048 for i in range(count)}


def sees_disks(count: int):
    want = sectors(count)
    return lambda report: want <= set(report.disks_by_size())


def addresses(rt: dict) -> list:
    return [d["hvinfo"] for d in rt["disks"] + rt["nics"]]


def topology(rt: dict) -> list:
    return [c["hvinfo"] for c in rt.get("controllers", [])]


def scale_test(runtime_dir: str, tmp_path: Path, make_disk, name: str, machine: str, total: int, cold: int, slots: int,
               **extra) -> None:
    paths = images(make_disk, total)
    args = {"name": name, "runtime_dir": runtime_dir, "memory": 512, "disks": [{"path": p} for p in paths[:cold]],
            "hvparams": guest_hvparams(machine_type=machine, pci_hotplug_slots=slots), **extra}
    started = run_module("kvm_instance", args)
    assert started["changed"] is True, started
    inst = started["instance"]
    wait_for_report(inst["serial_log"], sees_disks(cold), 240)
    grown = run_module("kvm_instance", {**args, "disks": [{"path": p} for p in paths]})  # the rest, hotplugged in one task
    assert grown["changed"] is True and len(grown["devices"]["plug"]) == total - cold, grown
    report = wait_for_report(inst["serial_log"], sees_disks(total), 240)
    assert len([n for n in report.block if n.startswith("vd")]) == total
    rt = read_rt(inst["runtime_file"])
    assert_matches_runtime(inst["qmp_socket"], rt)
    info = run_module("kvm_instance_info", {"name": name, "runtime_dir": runtime_dir})["instance"]
    assert info["drift"] == [], info["drift"]
    layout, buses = addresses(rt), topology(rt)
    # stop and start: every address kept
    assert run_module("kvm_instance", {**args, "state": "stopped", "shutdown_timeout": 20})["changed"] is True
    restarted = run_module("kvm_instance", {**args, "disks": [{"path": p} for p in paths]})
    assert restarted["changed"] is True, restarted
    again = read_rt(inst["runtime_file"])
    assert addresses(again) == layout and topology(again)[:len(buses)] == buses  # more spare ports may come, none moves
    layout, buses = addresses(again), topology(again)
    seen = wait_for_report(inst["serial_log"], sees_disks(total), 240)
    # live migration: the target is built from the record, every address kept
    target_dir, uri = str(tmp_path / "hv2"), tcp_uri()
    tgt = run_module("kvm_instance", {"name": name, "runtime_dir": target_dir, "state": "incoming",
                                      "runtime": inst["runtime_file"], "migration_uri": uri})
    assert tgt["changed"] is True, tgt
    moved = run_module("kvm_migrate", {"name": name, "runtime_dir": runtime_dir, "target_uri": uri})
    assert moved["changed"] is True, moved
    after = wait_for_report(tgt["instance"]["serial_log"], lambda r: True, 120, after_seq=0)
    assert set(after.disks_by_size()) == set(seen.disks_by_size())
    target_rt = read_rt(tgt["instance"]["runtime_file"])
    assert addresses(target_rt) == layout and topology(target_rt) == buses
    assert run_module("kvm_instance_info", {"name": name, "runtime_dir": target_dir})["instance"]["drift"] == []
    run_module("kvm_instance", {"name": name, "runtime_dir": target_dir, "state": "absent"})


def test_q35_with_a_hundred_virtio_disks(runtime_dir, tmp_path, make_disk):
    # Interrupt vectors, not buses, bound this: each root port takes one and each virtio-blk one per
    # queue plus one; a single vCPU runs out after about 37 disks, two are borderline; three vCPUs and one queue per disk fit.
    scale_test(runtime_dir, tmp_path, make_disk, "q100", "q35", total=100, cold=20, slots=80, vcpus=3,
               hvparams=guest_hvparams(machine_type="q35", pci_hotplug_slots=80, kvm_extra="-global virtio-blk-pci.num-queues=1"))


def test_pc_with_sixty_four_virtio_disks_on_bridges(runtime_dir, tmp_path, make_disk):
    scale_test(runtime_dir, tmp_path, make_disk, "p64", "pc", total=64, cold=20, slots=44)


def test_lsi_with_twenty_scsi_disks_on_three_controllers_and_one_hot_added(runtime_dir, make_disk):
    paths = images(make_disk, 21, "s")
    args = {"name": "lsi20", "runtime_dir": runtime_dir, "memory": 384, "disks": [{"path": p} for p in paths[:20]],
            "hvparams": guest_hvparams(disk_type="scsi-hd", pci_hotplug_slots=4)}
    inst = run_module("kvm_instance", args)["instance"]
    rt = read_rt(inst["runtime_file"])
    assert [c["hvinfo"]["id"] for c in rt["controllers"] if c["kind"] == "scsi"] == ["scsi", "scsi1", "scsi2"]
    report = wait_for_report(inst["serial_log"], sees_disks(20), 240)
    hosts = {report.block[name].hctl.split(":")[0] for name in report.block}
    assert len(hosts) == 3  # three SCSI hosts in the guest
    assert_matches_runtime(inst["qmp_socket"], rt)
    # fill the third controller, then one more disk makes a fourth controller, hot-added
    more = [make_disk(f"t{i}.img", 30 + i) for i in range(2)]
    for path in more:
        res = run_module("kvm_disk_hotplug", {"instance": "lsi20", "runtime_dir": runtime_dir, "disk": {"path": path}})
        assert res["changed"] is True, res
    rt = read_rt(inst["runtime_file"])
    assert [c["hvinfo"]["id"] for c in rt["controllers"] if c["kind"] == "scsi"] == ["scsi", "scsi1", "scsi2", "scsi3"]
    assert rt["disks"][-1]["hvinfo"]["bus"] == "scsi3.0"
    wait_for_report(inst["serial_log"], lambda r: {31 * 2048, 30 * 2048} <= set(r.disks_by_size()), 120)
    assert_matches_runtime(inst["qmp_socket"], rt)
    assert run_module("kvm_instance_info", {"name": "lsi20", "runtime_dir": runtime_dir})["instance"]["drift"] == []
    run_module("kvm_instance", {"name": "lsi20", "runtime_dir": runtime_dir, "state": "absent"})


def test_a_cd_beside_virtio_disks_changes_its_medium_live(runtime_dir, make_disk):
    cd_uuid = "cdcdcdcd-0000-4000-8000-000000000001"

    def cd(path: str | None) -> dict:
        return {"uuid": cd_uuid, "type": "scsi-cd", **({"path": path} if path else {})}

    boot, first, second = make_disk("boot.img", 2), make_disk("cd1.iso", 3), make_disk("cd2.iso", 5)
    args = {"name": "cd1", "runtime_dir": runtime_dir, "disks": [{"path": boot}, cd(first)], "hvparams": guest_hvparams()}
    inst = run_module("kvm_instance", args)["instance"]
    rt = read_rt(inst["runtime_file"])
    assert rt["disks"][0]["hvinfo"]["driver"] == "virtio-blk-pci" and rt["disks"][1]["hvinfo"]["driver"] == "scsi-cd"
    assert rt["disks"][1]["mode"] == "ro"
    wait_for_report(inst["serial_log"], lambda r: r.block.get("sr0") and r.block["sr0"].size_sectors == 6144, 120)
    changed = run_module("kvm_disk_hotplug", {"instance": "cd1", "runtime_dir": runtime_dir, "disk": cd(second)})
    assert changed["changed"] is True, changed
    wait_for_report(inst["serial_log"], lambda r: r.block.get("sr0") and r.block["sr0"].size_sectors == 10240, 60)
    assert read_rt(inst["runtime_file"])["disks"][1]["path"] == second
    ejected = run_module("kvm_instance", {**args, "disks": [{"path": boot}, cd(None)]})
    assert ejected["changed"] is True and ejected["devices"]["media"], ejected
    wait_for_report(inst["serial_log"], lambda r: r.block.get("sr0") and r.block["sr0"].size_sectors == 0, 60)
    assert run_module("kvm_instance", {**args, "disks": [{"path": boot}, cd(None)]})["changed"] is False
    assert_matches_runtime(inst["qmp_socket"], read_rt(inst["runtime_file"]))
    run_module("kvm_instance", {**args, "state": "absent"})


@pytest.fixture
def tgt(tmp_path):
    with Tgt(tmp_path) as target:
        yield target


@pytest.mark.xdist_group("fixed-host-names")  # a fixed netns / iSCSI portal: one worker runs these one after the other
def test_pass_through_disks_on_an_iscsi_target(runtime_dir, make_disk, tgt):
    iqn = tgt.target(1, {1: 32, 2: 48, 3: 64})
    args = {"name": "pt1", "runtime_dir": runtime_dir,
            "disks": [{"path": make_disk("boot.img", 2), "type": "paravirtual"},
                      {"uri": tgt.uri(iqn, 1), "type": "scsi-block"}],
            "hvparams": guest_hvparams(disk_type="scsi-hd", scsi_controller_type="virtio-scsi-pci")}
    inst = run_module("kvm_instance", args)["instance"]
    identity = ("IET", "VIRTUAL-DISK")
    wait_for_report(inst["serial_log"], lambda r: [(s.vendor, s.model) for s in r.scsi.values()] == [identity], 120)
    for lun, kind in ((2, "scsi-generic"), (3, "scsi-block")):
        res = run_module("kvm_disk_hotplug", {"instance": "pt1", "runtime_dir": runtime_dir,
                                              "disk": {"uri": tgt.uri(iqn, lun), "type": kind}})
        assert res["changed"] is True and res["device"]["hvinfo"]["driver"] == kind, res
    report = wait_for_report(inst["serial_log"], lambda r: len(r.scsi) == 3, 120)
    assert {(s.vendor, s.model) for s in report.scsi.values()} == {identity}  # the target's own, not QEMU's
    assert_matches_runtime(inst["qmp_socket"], read_rt(inst["runtime_file"]))
    gone = run_module("kvm_disk_hotplug", {"instance": "pt1", "runtime_dir": runtime_dir, "state": "absent",
                                           "disk": {"uri": tgt.uri(iqn, 2)}})
    assert gone["changed"] is True, gone
    refused = run_module("kvm_disk_hotplug", {"instance": "pt1", "runtime_dir": runtime_dir,
                                              "disk": {"path": make_disk("plain.img"), "type": "scsi-block"}})
    assert refused.get("failed") and "needs a block or SCSI generic device" in refused["msg"], refused
    run_module("kvm_instance", {**args, "state": "absent"})
