"""kvm_instance_info: compare() on crafted QEMU answers (drift both ways), drift() against the fake QEMU,
describe(), and apply() on runtime files (upgrade in place, exports)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import drift, info
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

from ....builders import LEGACY, disk, images, load_runtime, nic, runtime
from ....fakes.qemu import devfn

PID = os.getpid()  # the "QEMU" holding the descriptors below is this test process


class Answers:
    """What a truthful QEMU answers for ``rt``, written from the runtime; tests then make it lie."""

    def __init__(self, rt: dict[str, Any]) -> None:
        self.present: dict[str, str] = {}
        self.placed: dict[str, dict[str, Any]] = {}
        self.root_slots: dict[int, dict[str, Any]] = {0: {"slot": 0, "function": 0, "qdev_id": ""}, 1: {"slot": 1, "qdev_id": ""}}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.fdsets: dict[int, list[int]] = {}
        self.opened: list[int] = []
        for kind in ("controllers", "disks", "nics"):
            for dev in rt.get(kind, []):
                info_ = dev["hvinfo"]
                self.present[info_["id"]] = info_["driver"]
                where: dict[str, Any] = {"bus": info_["bus"]}
                if "addr" in info_:
                    where["addr"] = devfn(info_["addr"])
                    if info_["bus"] in ("pci.0", "pcie.0"):
                        self.root_slots.setdefault(where["addr"] >> 3, {"slot": where["addr"] >> 3, "function": 0, "qdev_id": info_["id"]})
                if "scsi-id" in info_:
                    where["scsi-id"] = info_["scsi-id"]
                self.placed[info_["id"]] = where
                if kind == "disks" and dev.get("path"):
                    self.hold(info_["id"], dev["path"])

    def hold(self, dev_id: str, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        self.opened.append(fd)
        fdset = len(self.fdsets) + 2
        self.fdsets[fdset] = [fd]
        self.blocks[dev_id] = {"qdev": f"/machine/peripheral/{dev_id}", "inserted": {"file": f"/dev/fdset/{fdset}"}}

    def compare(self, rt: dict[str, Any]) -> list[str]:
        return drift.compare(rt, PID, self.present, self.placed, self.root_slots, self.blocks, self.fdsets)

    def close(self) -> None:
        for fd in self.opened:
            os.close(fd)


@pytest.fixture
def rt(tmp_path) -> dict[str, Any]:
    directory = images(tmp_path, 1, 2)
    return runtime([disk(1, directory), disk(2, directory, type="scsi-hd")], [nic(1)], pci_hotplug_slots=20)


@pytest.fixture
def qemu(rt) -> Iterator[Answers]:
    answers = Answers(rt)
    yield answers
    answers.close()


def test_the_fixture_runtime_has_every_bus(rt):
    assert [(c["kind"], c["hvinfo"]["addr"]) for c in rt["controllers"]] == [("pci-bridge", "0x1f"), ("scsi", "0x10")]
    assert [d["hvinfo"]["bus"] for d in rt["disks"] + rt["nics"]] == ["pci.0", "scsi.0", "pci.0"]


def test_a_truthful_qemu_has_no_drift(rt, qemu):
    assert qemu.compare(rt) == []


def test_missing_devices(rt, qemu):
    for dev_id, slot in (("disk-00000001", 0x11), ("scsi", 0x10)):
        del qemu.present[dev_id]
        del qemu.root_slots[slot]
    assert qemu.compare(rt) == ["scsi: runtime has it at pci.0 slot 0x10, QEMU has no such device",
                                "disk-00000001: runtime has it at pci.0 slot 0x11, QEMU has no such device"]


def test_wrong_driver_bus_address_and_scsi_id(rt, qemu):
    qemu.present["nic-00000101"] = "e1000"
    qemu.placed["disk-00000001"] = {"bus": "pci.1", "addr": 0x08}
    qemu.placed["scsi"] = {"bus": "pci.0", "addr": 0x85}
    qemu.placed["disk-00000002"]["scsi-id"] = 3
    assert qemu.compare(rt) == [
        "scsi: runtime has it at pci.0 slot 0x10, QEMU has it at slot 0x10.5",
        "disk-00000001: runtime has it on bus pci.0, QEMU has it on pci.1",
        "disk-00000002: runtime has it at scsi.0 scsi-id 0, QEMU has it at scsi-id 3",
        "nic-00000101: runtime says driver virtio-net-pci, QEMU has e1000"]


def test_the_backing_file_is_compared_by_inode(rt, qemu, tmp_path):
    other = tmp_path / "other.img"
    other.write_bytes(b"x")
    link = tmp_path / "link.img"
    link.symlink_to(rt["disks"][0]["path"])
    rt_link = json.loads(json.dumps(rt))
    rt_link["disks"][0]["path"] = str(link)
    assert qemu.compare(rt_link) == []  # the same file by another name is no drift
    qemu.hold("disk-00000002", str(other))
    assert qemu.compare(rt) == [f"disk-00000002: QEMU's disk is {other}, the runtime says {rt['disks'][1]['path']}"]
    del qemu.blocks["disk-00000002"]
    assert qemu.compare(rt) == ["disk-00000002: QEMU has no disk attached to it"]
    qemu.blocks["disk-00000002"] = {"inserted": {"file": "/dev/fdset/77"}}  # a set QEMU no longer lists: not known, not drift
    assert qemu.compare(rt) == []
    os.unlink(rt["disks"][0]["path"])  # the recorded path is gone: cannot say
    assert qemu.compare(rt) == []


def test_unknown_devices_qemu_has(rt, qemu):
    qemu.present.update({"stray": "virtio-blk-pci", "sd9": "scsi-hd", "card": "e1000", "rng0": "virtio-rng-pci"})
    qemu.placed.update({"stray": {"bus": "pci.0", "addr": 0x98}, "sd9": {"bus": "scsi.0", "scsi-id": 4}, "card": {"bus": "pci.1"}})
    qemu.root_slots[0x13] = {"slot": 0x13, "function": 0, "qdev_id": "stray"}
    assert qemu.compare(rt) == ["QEMU has e1000 card, missing from the runtime",
                                "QEMU has scsi-hd sd9 at scsi.0 scsi-id 4, missing from the runtime",
                                "QEMU has virtio-blk-pci stray at pci.0 slot 0x13, missing from the runtime"]


def test_unnamed_devices_in_the_window(rt, qemu):
    qemu.root_slots[0x14] = {"slot": 0x14, "function": 0, "qdev_id": ""}  # e.g. a -device without id= from kvm_extra
    qemu.root_slots[0x03] = {"slot": 0x03, "function": 0, "qdev_id": ""}  # below the window: QEMU's to place
    assert qemu.compare(rt) == ["QEMU has a device at pci.0 slot 0x14, missing from the runtime"]


def test_a_named_unknown_device_in_the_window_is_drift(rt, qemu):
    qemu.present["rng0"] = "virtio-rng-pci"
    qemu.placed["rng0"] = {"bus": "pci.0", "addr": 0x14 << 3}
    qemu.root_slots[0x14] = {"slot": 0x14, "function": 0, "qdev_id": "rng0"}
    assert qemu.compare(rt) == ["QEMU has virtio-rng-pci rng0 at pci.0 slot 0x14, missing from the runtime"]
    qemu.present["rng0"] = "virtio-blk-pci"  # a kind it knows: reported once, by the first look
    assert qemu.compare(rt) == ["QEMU has virtio-blk-pci rng0 at pci.0 slot 0x14, missing from the runtime"]


def test_placement_questions():
    present = {"disk-1": "virtio-blk-pci", "d2": "scsi-cd", "scsi": "megasas", "pci.1": "pci-bridge", "pci.2": "pcie-root-port",
               "d3": "ide-hd", "rng0": "virtio-rng-pci", "card": "rtl8139"}
    asks = drift.placement_questions(present)
    asked = {(i, p) for i, p, _path in asks}
    assert asked - {("d3", "addr")} == {  # an IDE disk's addr is asked too; QEMU refuses it and the answer is ignored
        ("disk-1", "parent_bus"), ("disk-1", "addr"), ("d2", "parent_bus"), ("d2", "scsi-id"), ("scsi", "parent_bus"), ("scsi", "addr"),
        ("pci.1", "parent_bus"), ("pci.1", "addr"), ("pci.2", "parent_bus"), ("pci.2", "addr"), ("d3", "parent_bus"),
        ("rng0", "parent_bus"), ("card", "parent_bus"), ("card", "addr")}
    assert all(path == f"/machine/peripheral/{i}" for i, _p, path in asks)


# -- drift() against the fake QEMU ----------------------------------------------------------------------------------


def test_drift_asks_qemu_and_compares(rt, fake, tmp_path):
    load_runtime(fake, rt)
    assert asyncio.run(drift.drift(qmp.Monitor(fake), rt, PID)) == []
    assert fake.commands() and fake.changes() == []  # asked QEMU, changed nothing
    fake.devices["disk-00000001"]["addr"] = 0x15 << 3
    fake.devices["disk-00000002"]["scsi-id"] = 6
    fake.devices["stray"] = {"driver": "e1000", "bus": "pci.0", "addr": 0x16 << 3, "drive": None}
    fake.devices["pci.1"]["bus"] = "pci.0"
    os.rename(rt["disks"][1]["path"], tmp_path / "moved.img")
    (tmp_path / "d2.img").write_bytes(b"new file at the old name")
    assert asyncio.run(drift.drift(qmp.Monitor(fake), rt, PID)) == [
        "disk-00000001: runtime has it at pci.0 slot 0x11, QEMU has it at slot 0x15.0",
        "disk-00000002: runtime has it at scsi.0 scsi-id 0, QEMU has it at scsi-id 6",
        f"disk-00000002: QEMU's disk is {tmp_path / 'moved.img'}, the runtime says {rt['disks'][1]['path']}",
        "QEMU has e1000 stray at pci.0 slot 0x16, missing from the runtime"]


def test_drift_fails_when_qemu_does_not_answer(rt, fake):
    fake.refuse["query-pci"] = ("GenericError", "busy")
    with pytest.raises(KvmError, match=r"^drift: QEMU refused query-pci: busy$"):
        asyncio.run(drift.drift(qmp.Monitor(fake), rt, PID))


# -- describe and apply --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mark,status", [(None, "down"), ("stopped", "stopped"), ("incoming", "incoming-failed")])
def test_describe_without_a_qemu(rt, mark, status):
    if mark:
        rt["mark"] = mark
    report = asyncio.run(info.describe("/x/vm1.runtime.json", rt, 1, None))
    assert (report["status"], report["alive"], report["pid"], report["drift"]) == (status, False, None, [])
    assert (report["format_version"], report["current_version"], report["name"]) == (1, 2, "vm1")
    assert report["bus"] == allocator.describe(construct.bus_state(rt)) and report["interrupted_hotplugs"] == []


def test_describe_lists_interrupted_hotplugs(rt, rd):
    where = paths(rd.path, "vm1")
    journal.write(rd, where, [("disks", rt["disks"][0])])
    report = asyncio.run(info.describe(where.runtime, rt, 2, Session(Call({}), rd, where, writer=False)))
    assert report["interrupted_hotplugs"] == ["disk-00000001"] and report["qmp_socket"] == where.qmp


def test_instance_of():
    assert info._instance_of("/srv/x/vm1.runtime.json") == ("/srv/x", "vm1")
    assert info._instance_of("rel/vm-2.runtime.json") == (os.path.abspath("rel"), "vm-2")
    assert info._instance_of("/srv/x/.runtime.json") is None and info._instance_of("/srv/x/vm1.json") is None


def legacy_file(rd: RunDir, name: str) -> str:
    rd.write_atomic(name, json.dumps(LEGACY))
    return rd.join(name)


def apply(**params: Any) -> dict[str, Any]:
    call = Call({"path": None, "runtime_dir": None, "name": None, "upgrade": False, "export": None, **params},
                check=params.pop("check", False), diff=True)
    return asyncio.run(info.apply(call))


def test_upgrade_in_place(rd):
    path = legacy_file(rd, "old1.runtime.json")
    looked = apply(path=path)
    assert looked["changed"] is False and looked["instance"]["format_version"] == 0 and rd.read_text("old1.runtime.json") == json.dumps(LEGACY)
    checked = apply(path=path, upgrade=True, check=True)
    assert checked["changed"] and checked["diff"] == [{"before": f"{path}: format version 0\n", "after": f"{path}: format version 2\n"}]
    assert rd.read_text("old1.runtime.json") == json.dumps(LEGACY)
    done = apply(path=path, upgrade=True)
    assert done["changed"] and done["instance"]["format_version"] == 2
    assert rd.read_text("old1.runtime.json") == runtime_file.dumps(upgrade.upgrade(json.loads(json.dumps(LEGACY)))[0])
    assert apply(path=path, upgrade=True)["changed"] is False
    assert "old1.lock" in rd.listdir()  # the instance lock of a runtime file that exists


def test_a_file_not_named_like_a_runtime_is_locked_through_its_directory(rd):
    path = legacy_file(rd, "export.json")
    assert apply(path=path, upgrade=True)["changed"]
    assert rd.listdir() == ["export.json"]


def test_exports_and_instances_by_name(rd):
    path = legacy_file(rd, "old1.runtime.json")
    exported = apply(path=path, export="legacy")["instance"]["exported"]
    assert exported[2]["security_model"] == "none" and [n["pci"] for n in exported[1]] == [18]
    assert apply(path=path, export="runtime-v1")["instance"]["exported"]["version"] == 1
    runtime_file.save(rd, "q1", runtime([disk(1)], [], machine_type="q35"))
    with pytest.raises(KvmError, match="cannot export to runtime format version 1: the machine is q35"):
        apply(path=rd.join("q1.runtime.json"), export="runtime-v1")
    rd.unlink("q1.runtime.json")
    runtime_file.save(rd, "vm1", runtime([disk(1)], []))
    listed = apply(runtime_dir=rd.path)
    assert [r["name"] for r in listed["instances"]] == ["old1", "vm1"] and "instance" not in listed
    assert apply(runtime_dir=rd.path, name="vm1")["instance"]["runtime"]["disks"][0]["path"] == "/srv/d1.img"
    with pytest.raises(KvmError, match="does not exist"):
        apply(runtime_dir=rd.path, name="ghost")
