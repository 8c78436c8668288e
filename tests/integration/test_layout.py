"""Issue 2 in real QEMU: every device of a built command line sits exactly at its hvinfo address."""

from __future__ import annotations

import os

import pytest
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from helpers import assert_matches_runtime, pci_slots, q, qmp, running_pid, start_paused


def test_three_virtio_disks_and_two_nics(runtime_dir, make_disk):
    disks = [{"path": make_disk(f"d{i}.img", i + 1)} for i in range(3)]
    rt, where = start_paused(runtime_dir, "v1", {}, disks, [{}, {"network": {"type": "user"}}])
    try:
        assert [d["hvinfo"]["addr"] for d in rt["disks"] + rt["nics"]] == ["0x10", "0x11", "0x12", "0x13", "0x14"]
        assert_matches_runtime(where.qmp, rt)
        slots = pci_slots(where.qmp)
        assert [slots[s]["qdev_id"] for s in (0x10, 0x11, 0x12, 0x13, 0x14)] == [d["hvinfo"]["id"] for d in rt["disks"] + rt["nics"]]
    finally:
        where.cleanup()


@pytest.mark.parametrize("controller,driver", [("lsi", "lsi53c895a"), ("megasas", "megasas"), ("virtio-scsi-pci", "virtio-scsi-pci")])
def test_four_scsi_disks_on_each_controller(runtime_dir, make_disk, controller, driver):
    disks = [{"path": make_disk(f"s{i}.img", i + 1)} for i in range(4)]
    rt, where = start_paused(runtime_dir, "s1", {"disk_type": "scsi-hd", "scsi_controller_type": controller}, disks, [{}])
    try:
        assert [d["hvinfo"]["scsi-id"] for d in rt["disks"]] == [0, 1, 2, 3]
        assert rt["nics"][0]["hvinfo"]["addr"] == "0x11"  # the SCSI controller is a recorded PCI device at 0x10
        assert_matches_runtime(where.qmp, rt)
        controllers = [s for s, d in pci_slots(where.qmp).items() if d["qdev_id"] == "scsi"]
        assert controllers == [0x10]
        assert q(where.qmp, "qom-get", {"path": "/machine/peripheral/scsi", "property": "type"}) == driver
        for disk in rt["disks"]:
            path = f"/machine/peripheral/{disk['hvinfo']['id']}"
            chan, lun = qmp(where.qmp, ("qom-get", {"path": path, "property": "channel"}), ("qom-get", {"path": path, "property": "lun"}))
            assert (chan, lun) == (0, 0)
    finally:
        where.cleanup()


def test_scsi_cd_and_hd_mix_and_literal_comma_paths(runtime_dir, make_disk):
    hd = make_disk("a,b.img", 1)
    evil = make_disk("x,file.filename=evil.img", 2)
    rt_cd, where_cd = start_paused(runtime_dir, "cd1", {"disk_type": "scsi-cd", "scsi_controller_type": "virtio-scsi-pci"},
                                   [{"path": make_disk("cd.iso", 1), "mode": "ro"}], [])
    rt, where = start_paused(runtime_dir, "mix1", {"disk_type": "scsi-hd"}, [{"path": hd}, {"path": evil}], [])
    try:
        assert_matches_runtime(where_cd.qmp, rt_cd)
        assert q(where_cd.qmp, "qom-get", {"path": f"/machine/peripheral/{rt_cd['disks'][0]['hvinfo']['id']}", "property": "type"}) == "scsi-cd"
        assert_matches_runtime(where.qmp, rt)
        # QEMU opened nothing by name: each disk is the descriptor handed over, and that is the exact file
        files = {b["qdev"]: b["inserted"]["image"]["filename"] for b in q(where.qmp, "query-block") if b.get("inserted")}
        sets = {fd["opaque"]: (s["fdset-id"], fd["fd"]) for s in q(where.qmp, "query-fdsets") for fd in s["fds"]}
        pid = running_pid(runtime_dir, "mix1")
        for disk, path in zip(rt["disks"], (hd, evil), strict=True):
            dev_id = disk["hvinfo"]["id"]
            fdset, fd = sets[dev_id]
            assert files[dev_id] == f"/dev/fdset/{fdset}"
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == path
        assert [n["node-name"] for n in q(where.qmp, "query-named-block-nodes", {"flat": True}) if "file.filename" in n["node-name"]] == []
    finally:
        where.cleanup()
        where_cd.cleanup()


@pytest.mark.parametrize("nic_type", list(hvparams.NIC_DRIVERS))
def test_every_nic_type(runtime_dir, nic_type):
    rt, where = start_paused(runtime_dir, "n1", {"nic_type": nic_type}, [], [{"mac": "52:54:00:00:10:01"}])
    try:
        assert_matches_runtime(where.qmp, rt)
        dev_id = rt["nics"][0]["hvinfo"]["id"]
        assert q(where.qmp, "qom-get", {"path": f"/machine/peripheral/{dev_id}", "property": "type"}) == hvparams.NIC_DRIVERS[nic_type]
        assert q(where.qmp, "qom-get", {"path": f"/machine/peripheral/{dev_id}", "property": "mac"}) == "52:54:00:00:10:01"
    finally:
        where.cleanup()


def test_eight_lsi_disks_take_a_second_controller(runtime_dir, make_disk):
    disks = [{"path": make_disk(f"e{i}.img", 1)} for i in range(8)]
    rt, where = start_paused(runtime_dir, "full1", {"disk_type": "scsi-hd"}, disks, [])
    try:
        assert [c["hvinfo"]["id"] for c in rt["controllers"] if c["kind"] == "scsi"] == ["scsi", "scsi1"]
        assert [(d["hvinfo"]["bus"], d["hvinfo"]["scsi-id"]) for d in rt["disks"]] == [("scsi.0", i) for i in range(7)] + [("scsi1.0", 0)]
        assert_matches_runtime(where.qmp, rt)
    finally:
        where.cleanup()
