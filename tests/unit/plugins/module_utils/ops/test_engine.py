"""The hotplug engine's decisions against a fake QEMU: plug and verify, roll back, the drift hint, unplug, reconcile, replug."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item, PlugFailed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp, tap

from ....builders import INST, uuid
from ....fakes.qemu import FakeQemu, in_order, is_query

HV = hvparams.normalize({"accel": "tcg"})


@pytest.fixture
def image(tmp_path):
    def make(name: str) -> str:
        path = tmp_path / name
        path.write_bytes(b"\0" * 4096)
        return str(path)
    return make


def pci_disk(path: str, n: int = 1, slot: int = 0x10, bus: str = "pci.0") -> Item:
    record = devices.disk_record({"path": path, "uuid": uuid(n)}, INST)
    record["type"] = "paravirtual"
    record["hvinfo"] = hvi.pci_hvinfo("virtio-blk-pci", f"disk-{n}", bus, slot)
    return Item("disks", record)


def scsi_disk(path: str | None, n: int, target: int, kind: str = "scsi-hd", bus: str = "scsi.0", **spec: Any) -> Item:
    record = devices.disk_record({"path": path, "uuid": uuid(n), "type": kind, **spec}, INST)
    record["hvinfo"] = hvi.scsi_hvinfo(kind, f"disk-{n}", bus, target)
    return Item("disks", record)


def nic(n: int, slot: int, network: dict | None = None) -> Item:
    record = devices.nic_record({"uuid": uuid(0x100 + n), "network": network}, INST)
    record["hvinfo"] = hvi.pci_hvinfo("virtio-net-pci", f"nic-{n}", "pci.0", slot)
    return Item("nics", record)


def controller(slot: int = 0x12, ctl_id: str = "scsi") -> Item:
    return Item("controllers", {"kind": "scsi", "hvinfo": hvi.pci_hvinfo("lsi53c895a", ctl_id, "pci.0", slot)})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def plug(fake: FakeQemu, items: list[Item], timeout: float = 1.0) -> None:
    run(engine.plug(qmp.Monitor(fake), items, HV, timeout))


def failed_plug(fake: FakeQemu, items: list[Item], timeout: float = 1.0) -> PlugFailed:
    with pytest.raises(PlugFailed) as err:
        plug(fake, items, timeout)
    return err.value


def foreign(fake: FakeQemu, dev_id: str, driver: str = "virtio-blk-pci", **where: Any) -> None:
    """A device QEMU has that nobody recorded (drift)."""
    fake.devices[dev_id] = {"driver": driver, "bus": where.pop("bus", "pci.0"), "drive": None, "multifunction": False, **where}


# -- plug ------------------------------------------------------------------------------------------


def test_a_disk_is_handed_over_then_plugged_in_one_burst_and_verified(fake, image):
    path = image("a.img")
    item = pci_disk(path)
    plug(fake, [item])
    assert fake.changes() == ["add-fd disk-1", "blockdev-add disk-1", "device_add disk-1"]  # the descriptor, its backend, then the device
    after_add = fake.commands()[fake.commands().index("device_add") + 1:]
    assert after_add and all(is_query(c) for c in after_add)  # then verified: QEMU is asked, nothing more is changed
    assert fake.sent("add-fd") == [{"opaque": "disk-1"}] and item.fdset == 2
    assert fake.sent("blockdev-add") == [devices.blockdev_args(item.record, "/dev/fdset/2")]
    assert fake.sent("device_add") == [{**item.record["hvinfo"], "drive": "disk-1"}]  # the hvinfo, typed, plus the drive
    assert fake.placed("disk-1") == ("pci.0", 0x80) and fake.nodes["disk-1"]["attached"] == "disk-1"
    assert os.path.samestat(os.fstat(fake.fdsets[2][0]["fd"]), os.stat(path))  # QEMU holds the very file


def test_a_burst_of_every_kind(fake, image, monkeypatch):
    opened: list[tuple[str, str | None]] = []

    def open_tap(ifname: str, bridge: str | None) -> tuple[int, bool]:
        opened.append((ifname, bridge))
        read_end, write_end = os.pipe()
        os.close(write_end)
        return read_end, True

    monkeypatch.setattr(tap, "open_tap", open_tap)
    items = [controller(), scsi_disk(image("s.img"), 2, 0), scsi_disk(None, 3, 1, "scsi-cd", uuid=uuid(3)),
             scsi_disk(None, 4, 2, "scsi-block", uri="iscsi://t/iqn.2026-01.x:t/1"), nic(1, 0x13, {"type": "user"}),
             nic(2, 0x14, {"type": "tap", "ifname": "tap9", "bridge": "br0"}), nic(3, 0x15)]
    plug(fake, items)
    assert opened == [("tap9", "br0")]
    changes = fake.changes()
    # the descriptors are handed over first, then the burst: the controller before the disks on its bus, each backend
    # before its device (the order of independent devices is not the contract)
    assert sorted(changes[:2]) == ["add-fd disk-2", "getfd nic-2"] and not any(c.startswith(("add-fd", "getfd")) for c in changes[2:])
    assert all(in_order(changes, "device_add scsi", f"device_add {disk}") for disk in ("disk-2", "disk-3", "disk-4"))
    assert all(in_order(changes, backend, f"device_add {backend.split()[1]}")
               for backend in ("blockdev-add disk-2", "blockdev-add disk-4", "netdev_add nic-1", "netdev_add nic-2"))
    assert set(fake.devices) == {i.id for i in items} and set(fake.nodes) == {"disk-2", "disk-4"} and set(fake.netdevs) == {"nic-1", "nic-2"}
    assert [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-2"] and fake.fdnames == {}  # the tap's fd went to its netdev
    assert fake.netdevs["nic-2"] == {"type": "tap", "id": "nic-2", "fd": "nic-2", "held": fake.netdevs["nic-2"]["held"]}
    assert [fake.placed(i.id) for i in items] == [("pci.0", 0x90), ("scsi.0", 0), ("scsi.0", 1), ("scsi.0", 2), ("pci.0", 0x98),
                                                  ("pci.0", 0xA0), ("pci.0", 0xA8)]
    assert fake.devices["disk-3"]["drive"] is None and "disk-3" not in fake.nodes  # an empty drive has no backend


def test_a_refused_device_add_removes_the_whole_burst(fake, image):
    fake.refuse_if = lambda command, args: ("GenericError", "Bus does not support hotplugging") \
        if command == "device_add" and args["id"] == "disk-2" else None
    items = [pci_disk(image("a.img"), 1, 0x10), pci_disk(image("b.img"), 2, 0x11)]
    err = failed_plug(fake, items)
    assert str(err) == "device_add: QEMU refused device_add: Bus does not support hotplugging" and err.clean
    assert fake.devices == {} and fake.nodes == {} and fake.fdsets == {}
    assert ("device_del", {"id": "disk-1"}) in fake.log and ("device_del", {"id": "disk-2"}) not in fake.log


def test_a_refused_backend_names_its_step_and_nothing_stays(fake, image):
    fake.refuse["blockdev-add"] = ("GenericError", "Could not open '/dev/fdset/2': Permission denied")
    err = failed_plug(fake, [pci_disk(image("a.img"))])
    assert str(err) == "blockdev-add: QEMU refused blockdev-add: Could not open '/dev/fdset/2': Permission denied" and err.clean
    assert fake.devices == {} and fake.fdsets == {}
    fake.refuse.clear()
    fake.refuse["netdev_add"] = ("GenericError", "no such bridge")
    err = failed_plug(fake, [nic(1, 0x13, {"type": "user"})])
    assert err.step == "netdev_add" and fake.netdevs == {} and fake.devices == {}


@pytest.mark.parametrize("occupant,hvinfo,hint", [
    (("stray", {"addr": 0x80}), None, "stray at pci.0 slot 0x10"),
    (("disk-1", {"addr": 0x88}), None, "a device with id disk-1"),
    (("stray", {"bus": "scsi.0", "scsi-id": 0}), "scsi", "stray at scsi.0 scsi-id 0"),
])
def test_the_drift_hint_names_what_qemu_already_has(fake, image, occupant, hvinfo, hint):
    if hvinfo == "scsi":
        foreign(fake, "scsi", "lsi53c895a", addr=0x90)
        item = scsi_disk(image("a.img"), 1, 0)
        foreign(fake, occupant[0], "scsi-hd", **occupant[1])
    else:
        item = pci_disk(image("a.img"))
        foreign(fake, occupant[0], **occupant[1])
    err = failed_plug(fake, [item])
    assert err.step == "device_add" and err.clean
    assert str(err).startswith(f"device_add: drift: QEMU already has {hint} that the runtime file does not record (QEMU refused ")
    assert str(err).endswith("); run kvm_instance_info to see the drift")
    assert set(fake.devices) == {"scsi", occupant[0]} - ({"scsi"} if hvinfo is None else set())  # the foreign device stays
    assert fake.nodes == {} and fake.fdsets == {}


def test_no_drift_hint_when_nothing_sits_there(fake, image):
    foreign(fake, "elsewhere", addr=0x98)
    fake.refuse_if = lambda command, _args: ("GenericError", "hotplug is disabled") if command == "device_add" else None
    err = failed_plug(fake, [pci_disk(image("a.img"))])
    assert str(err) == "device_add: QEMU refused device_add: hotplug is disabled"


def test_a_refused_device_add_on_an_empty_qemu_is_a_plug_failure(fake, image):
    fake.refuse["device_add"] = ("GenericError", "hotplug is disabled")
    err = failed_plug(fake, [pci_disk(image("a.img"))])
    assert str(err) == "device_add: QEMU refused device_add: hotplug is disabled" and err.clean


@pytest.mark.parametrize("where,problem", [
    ({"addr": 0x88}, "verify: QEMU put disk-1 at devfn 0x88, not pci.0 slot 0x10"),
    ({"bus": "pci.1"}, "verify: QEMU put disk-1 on bus pci.1, not pci.0"),
])
def test_verify_catches_a_device_qemu_put_elsewhere(fake, image, where, problem):
    if "bus" in where:
        foreign(fake, "pci.1", "pci-bridge", addr=0xF8)
    fake.misplace["disk-1"] = where
    err = failed_plug(fake, [pci_disk(image("a.img"))])
    assert str(err) == problem and err.clean and "disk-1" not in fake.devices and fake.fdsets == {}


def test_verify_checks_scsi_ids_and_the_backing_file(fake, image):
    foreign(fake, "scsi", "lsi53c895a", addr=0x90)
    fake.misplace["disk-1"] = {"scsi-id": 5}
    err = failed_plug(fake, [scsi_disk(image("a.img"), 1, 2)])
    assert str(err) == "verify: QEMU put disk-1 at scsi-id 5, not 2"
    fake.misplace.clear()

    honest = fake.do_qom_get
    fake.do_qom_get = lambda args: "other-node" if args["property"] == "drive" else honest(args)  # a device on another node
    err = failed_plug(fake, [scsi_disk(image("b.img"), 2, 2)])
    assert str(err) == "verify: disk disk-2 is backed by other-node, not by what was handed over"
    del fake.do_qom_get
    fake.refuse_if = lambda command, args: ("DeviceNotFound", "gone") if command == "qom-get" else None
    err = failed_plug(fake, [pci_disk(image("c.img"), 3)])
    assert str(err) == "verify: QEMU has no device disk-3 (QEMU refused qom-get: gone)"
    fake.refuse_if = None
    fake.refuse_if = lambda command, args: ("GenericError", "busy") if args.get("property") == "drive" else None
    err = failed_plug(fake, [pci_disk(image("d.img"), 4)])
    assert str(err) == "verify: QEMU has no disk attached to disk-4 (QEMU refused qom-get: busy)"
    fake.refuse_if = None
    assert set(fake.devices) == {"scsi"} and fake.nodes == {} and fake.fdsets == {}


def test_a_rollback_that_cannot_unplug_is_not_clean(fake, image):
    fake.misplace["disk-1"] = {"addr": 0x88}
    fake.unplug = "silent"
    err = failed_plug(fake, [pci_disk(image("a.img"))], timeout=0.1)
    assert not err.clean
    assert str(err) == "verify: QEMU put disk-1 at devfn 0x88, not pci.0 slot 0x10; rolling back did not finish, the next run completes it"
    assert "disk-1" in fake.devices and "disk-1" in fake.nodes and fake.fdsets  # left for the next run's reconcile


def test_other_exceptions_roll_back_and_pass_through(fake, image, monkeypatch):
    real_open = engine.host.open_disk

    def second_fails(record: dict, hv: dict) -> tuple[int, bool]:
        if record["hvinfo"]["id"] == "disk-2":
            raise RuntimeError("unexpected")
        return real_open(record, hv)

    monkeypatch.setattr(engine.host, "open_disk", second_fails)
    with pytest.raises(RuntimeError, match="unexpected"):
        plug(fake, [pci_disk(image("a.img"), 1, 0x10), pci_disk(image("b.img"), 2, 0x11)])
    assert fake.fdsets == {} and ("remove-fd", {"fdset-id": 2}) in fake.log


def test_a_disk_that_cannot_be_opened_is_a_plug_failure(fake, image):
    item = pci_disk(image("a.img"))
    os.unlink(item.record["path"])
    err = failed_plug(fake, [item])
    assert "No such file or directory" in str(err) and err.clean
    assert not any(c.startswith(("add-fd", "blockdev-add", "device_add")) for c in fake.changes())  # nothing handed over or added
    assert fake.devices == {} and fake.nodes == {} and fake.fdsets == {}


# -- unplug ------------------------------------------------------------------------------------------


def plugged(fake: FakeQemu, items: list[Item]) -> list[Item]:
    plug(fake, items)
    fake.log.clear()
    return items


def unplug(fake: FakeQemu, items: list[Item], timeout: float = 1.0, step: str = "device_del") -> tuple[list[Item], list[tuple[Item, KvmError]]]:
    return run(engine.unplug(qmp.Monitor(fake), items, timeout, step))


def test_unplug_sends_every_request_at_once_and_releases_the_backends(fake, image):
    items = plugged(fake, [pci_disk(image("a.img"), 1, 0x10), nic(1, 0x11, {"type": "user"}), pci_disk(image("b.img"), 2, 0x12)])
    gone, stuck = unplug(fake, items)
    assert [i.id for i in gone] == ["disk-1", "nic-1", "disk-2"] and stuck == []
    changes = fake.changes()
    requests = next(i for i, c in enumerate(changes) if not c.startswith("device_del"))
    assert sorted(changes[:requests]) == ["device_del disk-1", "device_del disk-2", "device_del nic-1"]  # every request before any release
    assert fake.devices == {} and fake.nodes == {} and fake.netdevs == {} and fake.fdsets == {} and fake.fdnames == {}


def test_a_device_qemu_no_longer_has_counts_as_gone(fake, image):
    items = plugged(fake, [pci_disk(image("a.img"))])
    del fake.devices["disk-1"]
    fake.nodes["disk-1"]["attached"] = None
    gone, stuck = unplug(fake, items)
    assert [i.id for i in gone] == ["disk-1"] and stuck == [] and fake.nodes == {} and fake.fdsets == {}


def test_the_guest_may_refuse_or_stay_silent(fake, image):
    items = plugged(fake, [pci_disk(image("a.img"), 1, 0x10), pci_disk(image("b.img"), 2, 0x11), pci_disk(image("c.img"), 3, 0x12)])
    fake.unplug_of = {"disk-1": "guest-error", "disk-2": "silent"}
    gone, stuck = unplug(fake, items, timeout=0.2)
    assert [i.id for i in gone] == ["disk-3"]
    assert [(i.id, str(e)) for i, e in stuck] == [
        ("disk-1", "device_del: the guest refused to release disk-1"),
        ("disk-2", "device_del: no DEVICE_DELETED for disk-2 within 0.2s (the guest did not release it)")]
    assert set(fake.devices) == {"disk-1", "disk-2"} and set(fake.nodes) == {"disk-1", "disk-2"} and len(fake.fdsets) == 2


def test_a_silent_device_is_asked_again(fake, image, monkeypatch):
    monkeypatch.setattr(engine, "REREQUEST_EVERY", 0.05)
    items = plugged(fake, [pci_disk(image("a.img"))])
    fake.unplug = "second"  # like a guest that dropped the first ACPI request while booting
    gone, stuck = unplug(fake, items, timeout=5)
    assert [i.id for i in gone] == ["disk-1"] and stuck == [] and fake.unplug_requests["disk-1"] == 2


def test_a_refused_repeat_is_reported_with_qemus_words(fake, image, monkeypatch):
    monkeypatch.setattr(engine, "REREQUEST_EVERY", 0.05)
    items = plugged(fake, [pci_disk(image("a.img"))])
    fake.unplug_requests["disk-1"] = 1  # an unplug already pending from an earlier run
    fake.unplug = "refuse-repeat"
    gone, stuck = unplug(fake, items, timeout=0.2)
    assert gone == [] and str(stuck[0][1]) == ("device_del: no DEVICE_DELETED for disk-1 within 0.2s (the guest did not release it); "
                                               "QEMU said: QEMU refused device_del: Device disk-1 is already in the process of unplug")


def test_qemu_exiting_during_the_wait_is_reported_at_once(fake, image, monkeypatch):
    items = plugged(fake, [pci_disk(image("a.img"))])
    fake.unplug = "silent"
    # QEMU exits right after it accepted the requests (the engine's own step boundary says when)
    monkeypatch.setattr(engine.faults, "point", lambda step: fake.hang_up() if step == "unplug-requested" else None)
    with pytest.raises(QmpClosed) as err:
        unplug(fake, items, timeout=30, step="rollback")
    assert str(err.value) == ("rollback: QEMU closed its QMP connection (it exited) while waiting for DEVICE_DELETED for disk-1; "
                              "the runtime file still lists disk-1")
    monkeypatch.undo()
    fake.runstate = qmp.Runstate.RUNNING
    fake.drop_on.add("device_del")
    with pytest.raises(QmpClosed, match=r"^device_del: lost the QMP connection"):
        unplug(fake, items)


# -- reconcile and replug ------------------------------------------------------------------------------


def test_reconcile_commits_what_is_complete_and_removes_the_rest(fake, image):
    complete, partial_disk, partial_nic, wrong = (pci_disk(image("a.img"), 1, 0x10), pci_disk(image("b.img"), 2, 0x11),
                                                  nic(1, 0x12, {"type": "user"}), pci_disk(image("c.img"), 3, 0x13))
    plug(fake, [complete, wrong])
    plug(fake, [partial_disk, partial_nic])
    # a killed run: the second burst had only handed over and added backends; the third disk's device lost its backing
    for dev_id in ("disk-2", "nic-1"):
        fake._remove_device(dev_id)
    fake.nodes["disk-3"]["file"] = "/dev/fdset/99"
    fake.log.clear()
    journal = [Item(i.kind, i.record) for i in (complete, partial_disk, partial_nic, wrong)]  # as read back: no fdsets known
    committed, removed = run(engine.reconcile(qmp.Monitor(fake), journal, 1.0))
    assert [i.id for i in committed] == ["disk-1"] and [i.id for i in removed] == ["disk-2", "nic-1", "disk-3"]
    assert in_order(fake.changes(), "device_del disk-3", "blockdev-del disk-3")  # the device before its backend
    assert not any(c.split()[-1] == "disk-1" for c in fake.changes())  # what is complete is left alone
    assert set(fake.devices) == {"disk-1"} and set(fake.nodes) == {"disk-1"} and fake.netdevs == {}
    assert [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-1"]


def test_reconcile_refuses_to_guess_when_qemu_does_not_answer(fake):
    fake.refuse["query-fdsets"] = ("GenericError", "busy")
    with pytest.raises(KvmError, match=r"^reconcile: QEMU refused query-fdsets: busy$"):
        run(engine.reconcile(qmp.Monitor(fake), [], 1.0))


def test_reconcile_fails_when_a_wrong_device_does_not_leave(fake, image):
    wrong = pci_disk(image("a.img"))
    plug(fake, [wrong])
    fake.devices["disk-1"]["driver"] = "e1000"  # not what was planned
    fake.unplug = "silent"
    with pytest.raises(KvmError, match=r"^reconcile: no DEVICE_DELETED for disk-1"):
        run(engine.reconcile(qmp.Monitor(fake), [Item("disks", wrong.record)], 0.1))


def test_replug_clears_leftovers_then_plugs_at_the_recorded_address(fake, image):
    item = pci_disk(image("a.img"))
    plug(fake, [item])
    fake._remove_device("disk-1")  # QEMU lost the device; its node and fdset are still there
    fresh = Item("disks", item.record)
    run(engine.replug(qmp.Monitor(fake), fresh, HV, 1.0))
    assert fake.placed("disk-1") == ("pci.0", 0x80) and list(fake.fdsets) == [fresh.fdset] and fresh.fdset != item.fdset
    assert [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-1"]


def test_item_faces():
    disk = scsi_disk(None, 1, 0, "scsi-cd", uuid=uuid(1))
    assert (disk.id, disk.is_tap, disk.has_file, disk.backend()) == ("disk-1", False, False, None)
    assert disk.device() == {"driver": "scsi-cd", "id": "disk-1", "bus": "scsi.0", "channel": 0, "scsi-id": 0, "lun": 0}
    tap_nic = nic(1, 0x10, {"type": "tap", "ifname": "t0"})
    tap_nic.fdname = "nic-1"
    assert tap_nic.is_tap and tap_nic.backend() == ("netdev_add", {"type": "tap", "id": "nic-1", "fd": "nic-1"})
    assert nic(2, 0x11).backend() is None and controller().device() == controller().record["hvinfo"]
