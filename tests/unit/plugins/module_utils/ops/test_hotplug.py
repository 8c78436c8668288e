"""The hotplug modules: identity, asked properties, mismatch, plan_add and layout (pure); the journal around a burst,
settling a killed run's journal, and HotplugOp's decisions against the fake QEMU."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine, hotplug
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import transaction as tx
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item, PlugFailed
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, attach
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

from ....builders import INST, disk, images, load_runtime, nic, runtime, uuid
from ....fakes.qemu import FakeQemu, connect_to


def plan_add(rt: Any, kind: str, record: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The placed record and the controllers it needs, as transaction.place gives them."""
    items = tx.place(construct.bus_state(rt), kinds.BY_NAME[kind], record)
    return items[-1].record, [item.record for item in items[:-1]]


def writer(rd: RunDir, call: Call | None = None) -> Session:
    return Session(call or Call({}), rd, paths(rd.path, "vm1"), writer=True)


# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,spec,found", [
    ("disks", {"uuid": uuid(1).upper(), "path": "/a.img"}, ("uuid", uuid(1))),
    ("disks", {"path": "/a.img", "uri": "nbd://h/e"}, ("path", "/a.img")),
    ("disks", {"uri": "nbd://h/e"}, ("uri", "nbd://h/e")),
    ("nics", {"mac": "52:54:00:AB:CD:EF"}, ("mac", "52:54:00:ab:cd:ef")),
    ("nics", {"uuid": uuid(2), "mac": "52:54:00:ab:cd:ef"}, ("uuid", uuid(2))),
])
def test_identity(kind, spec, found):
    assert kinds.BY_NAME[kind].identity(spec) == found


@pytest.mark.parametrize("kind,spec,message", [
    ("disks", {"type": "scsi-cd"}, "disk needs a 'uuid', a 'path' or a 'uri' to be identified"),
    ("nics", {"network": {"type": "user"}}, "nic needs a 'uuid' or a 'mac' to be identified"),
    ("disks", {"uuid": "nope", "path": "/a"}, "is not a UUID"),
])
def test_identity_refusals(kind, spec, message):
    with pytest.raises(KvmError, match=message):
        kinds.BY_NAME[kind].identity(spec)


def test_asked_properties_are_normalised_like_records():
    assert kinds.DISKS.asked({"uuid": uuid(1), "path": "/a", "type": "scsi", "mode": "ro"}) == {
        "path": "/a", "mode": "ro", "type": "scsi-hd"}
    assert kinds.DISKS.asked({"uuid": uuid(1)}) == {}
    assert kinds.NICS.asked({"mac": "52:54:00:AA:00:01", "network": {"type": "tap", "ifname": "t0", "bridge": None}}) == {
        "mac": "52:54:00:aa:00:01", "network": {"type": "tap", "ifname": "t0"}}
    assert kinds.NICS.asked({"uuid": uuid(1), "network": None}) == {"network": None}


def test_mismatch_names_each_differing_property():
    found = disk(1)
    assert kinds.DISKS.mismatch(found, {**found}) == []
    assert kinds.DISKS.mismatch(found, {**found, "mode": "ro", "format": "qcow2"}) == [
        "format 'raw' (asked: 'qcow2')", "mode 'rw' (asked: 'ro')"]
    assert kinds.NICS.mismatch(nic(1), {**nic(1), "network": {"type": "user"}}) == ["network None (asked: {'type': 'user'})"]
    assert kinds.NICS.mismatch(nic(1), {**nic(1), "uuid": uuid(9)}) == []  # identity is not a property


def test_plan_add_places_without_changing_the_runtime():
    rt = runtime([disk(n, type="scsi-hd") for n in range(1, 8)], [nic(1)])
    before = runtime_file.copy(rt)
    record, controllers = plan_add(rt, "disks", disk(9, type="scsi-hd"))
    assert record["type"] == "scsi-hd" and record["hvinfo"]["bus"] == "scsi1.0" and record["hvinfo"]["scsi-id"] == 0
    assert controllers == [{"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi1", "bus": "pci.0", "addr": "0x12"}}]
    paravirtual, none = plan_add(rt, "disks", disk(10, type="paravirtual"))
    assert (paravirtual["hvinfo"]["addr"], none) == ("0x12", [])
    added_nic, none = plan_add(rt, "nics", nic(2))
    assert added_nic["hvinfo"] == {"driver": "virtio-net-pci", "id": "nic-00000102", "bus": "pci.0", "addr": "0x12"} and none == []
    assert rt == before
    with pytest.raises(KvmError, match="ide disks cannot be hotplugged"):
        plan_add(rt, "disks", disk(11, type="ide"))


def test_layout_lists_controllers_then_disks_then_nics():
    rt = runtime([disk(1, type="scsi-hd"), disk(2)], [nic(1)])
    assert tx.layout(rt) == ("scsi lsi53c895a pci.0 slot 0x10\n"
                             "disk-00000001 scsi-hd scsi.0 scsi-id 0\n"
                             "disk-00000002 virtio-blk-pci pci.0 slot 0x11\n"
                             "nic-00000101 virtio-net-pci pci.0 slot 0x12\n")


def test_find_and_new_record():
    rt = runtime([disk(1), disk(2)], [])
    assert tx.find(rt["disks"], "path", "/srv/d2.img")["uuid"] == uuid(2)
    assert tx.find(rt["disks"], "uuid", uuid(3)) is None
    assert hotplug.new_record(kinds.DISKS, {"path": "/srv/x.img"}, rt, "vm1") == devices.disk_record({"path": "/srv/x.img"}, INST)
    rt.pop("uuid")
    assert hotplug.new_record(kinds.NICS, {"mac": "52:54:00:00:00:07"}, rt, "vm1") == devices.nic_record(
        {"mac": "52:54:00:00:00:07"}, devices.derived_uuid("instance", "vm1"))


# -- with a runtime directory and the fake QEMU ------------------------------------------------------


def test_commit_add_journals_before_qemu_and_clears_after_saving(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2)
    rt = runtime([disk(1, directory)], [])
    load_runtime(fake, rt)
    paths(rd.path, "vm1")
    runtime_file.save(rd, "vm1", rt)
    record, _none = plan_add(rt, "disks", disk(2, directory))
    after = {**runtime_file.copy(rt), "disks": [*rt["disks"], record]}
    seen: list[tuple[str, bool]] = []
    fake.before_command = lambda command, _args: seen.append((command, rd.exists("vm1.pending.json")))
    asyncio.run(tx.commit_add(writer(rd), qmp.Monitor(fake), rt, [Item("disks", record)], 1.0))
    assert seen[0] == ("add-fd", True)  # the journal exists before QEMU is touched
    assert runtime_file.load(rd, "vm1")[0] == after and not rd.exists("vm1.pending.json")


def test_a_failed_plug_clears_the_journal_only_when_clean(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2)
    rt = runtime([disk(1, directory)], [])
    load_runtime(fake, rt)
    where = paths(rd.path, "vm1")
    record, _none = plan_add(rt, "disks", disk(2, directory))
    fake.refuse["device_add"] = ("GenericError", "no hotplug")
    with pytest.raises(PlugFailed):
        asyncio.run(tx.commit_add(writer(rd), qmp.Monitor(fake), rt, [Item("disks", record)], 1.0))
    assert rd.listdir() == []
    fake.refuse.clear()
    fake.misplace[record["hvinfo"]["id"]] = {"addr": 0xF8}
    fake.unplug = "silent"
    with pytest.raises(PlugFailed, match="rolling back did not finish"):
        asyncio.run(tx.commit_add(writer(rd), qmp.Monitor(fake), rt, [Item("disks", record)], 0.1))
    assert [rec["hvinfo"]["id"] for _k, rec in journal.read(rd, where)] == [record["hvinfo"]["id"]]  # for the next run


@pytest.mark.parametrize("unplug,message,journal_left", [
    ("ack", "save: cannot write: No space left on device; the new device(s) were unplugged again, nothing changed", False),
    ("silent", "save: cannot write: No space left on device; the new device(s) could not be unplugged again, the next run reconciles "
               "them", True),
])
def test_a_failed_save_unplugs_again(fake, rd, tmp_path, monkeypatch, unplug, message, journal_left):
    directory = images(tmp_path, 1, 2)
    rt = runtime([disk(1, directory)], [])
    paths(rd.path, "vm1")
    record, _none = plan_add(rt, "disks", disk(2, directory))

    def full(*_args: Any) -> None:
        raise KvmError("cannot write: No space left on device")

    monkeypatch.setattr(runtime_file, "save", full)
    fake.unplug = unplug
    with pytest.raises(KvmError) as err:
        asyncio.run(tx.commit_add(writer(rd), qmp.Monitor(fake), rt, [Item("disks", record)], 0.1))
    assert str(err.value) == message and rd.exists("vm1.pending.json") == journal_left
    assert (record["hvinfo"]["id"] in fake.devices) == journal_left


def test_settle_journal_commits_or_removes_what_a_killed_run_left(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2, 3)
    rt = runtime([disk(1, directory)], [])
    load_runtime(fake, rt)
    where = paths(rd.path, "vm1")
    runtime_file.save(rd, "vm1", rt)
    done, _none = plan_add(rt, "disks", disk(2, directory))
    half = {**disk(3, directory), "type": "paravirtual", "hvinfo": {**done["hvinfo"], "id": "disk-00000003", "addr": "0x12"}}
    asyncio.run(engine.plug(qmp.Monitor(fake), [Item("disks", done), Item("disks", half)], rt["hvparams"], 1.0))
    fake._remove_device("disk-00000003")  # killed after the backends, before its device_add
    journal.write(rd, where, [("disks", rt["disks"][0]), ("disks", done), ("disks", half)])
    call = Call({})
    assert asyncio.run(tx.settle_journal(writer(rd, call), qmp.Monitor(fake), rt, 1.0))[1] is True
    assert [d["uuid"] for d in runtime_file.load(rd, "vm1")[0]["disks"]] == [uuid(1), uuid(2)]
    assert call.warnings == ["an interrupted hotplug of disk-00000002 had completed in QEMU; the runtime file records it now",
                             "an interrupted hotplug of disk-00000003 left parts in QEMU; they were removed"]
    assert not rd.exists("vm1.pending.json") and "disk-00000003" not in fake.nodes
    assert asyncio.run(tx.settle_journal(writer(rd, call), qmp.Monitor(fake), rt, 1.0))[1] is False  # nothing left to settle


def test_a_journal_of_recorded_devices_is_just_dropped(fake, rd, tmp_path):
    rt = runtime([disk(1, images(tmp_path, 1))], [])
    where = paths(rd.path, "vm1")
    journal.write(rd, where, [("disks", rt["disks"][0])])
    assert asyncio.run(tx.settle_journal(writer(rd), qmp.Monitor(fake), rt, 1.0))[1] is False
    assert fake.log == [] and rd.listdir() == []


class Instance:
    """A running instance as the hotplug modules see it: a runtime file, a pid, the fake QEMU behind qmp.connect."""

    def __init__(self, rd: RunDir, fake: FakeQemu, rt: dict[str, Any], monkeypatch: Any) -> None:
        self.rd, self.fake, self.where = rd, fake, paths(rd.path, "vm1")
        runtime_file.save(rd, "vm1", rt)
        load_runtime(fake, rt)
        self.sockets: list[str] = []
        monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
        monkeypatch.setattr(qmp, "open_monitor", connect_to(fake, self.sockets))

    def run(self, kind: str, spec: dict[str, Any], state: str = "present", check: bool = False) -> tuple[bool, Any, dict, Call]:
        call = Call({"unplug_timeout": 0.2}, check=check)

        async def go() -> Any:
            async with attach(call, self.rd, self.where, writer=not check) as session:
                op = hotplug.HotplugOp(session, kinds.BY_NAME[kind], spec)
                return await (op.present() if state == "present" else op.absent())

        changed, record, diff = asyncio.run(go())
        return changed, record, diff, call

    def saved(self) -> dict[str, Any]:
        return runtime_file.load(self.rd, "vm1")[0]


def test_present_and_plugged_is_no_change(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1)
    inst = Instance(rd, fake, runtime([disk(1, directory)], [nic(1)]), monkeypatch)
    before = fake.state()
    changed, record, diff, call = inst.run("disks", {"path": f"{directory}/d1.img"})
    assert (changed, record["uuid"], diff, call.warnings) == (False, uuid(1), None, [])
    assert fake.changes() == [] and fake.state() == before  # looked, touched nothing
    changed, _record, _diff, _call = inst.run("nics", {"mac": nic(1)["mac"].upper()})
    assert changed is False


def test_a_device_qemu_lost_is_plugged_again_where_it_was(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1, 2)
    inst = Instance(rd, fake, runtime([disk(1, directory), disk(2, directory)], []), monkeypatch)
    fake._remove_device("disk-00000002")
    changed, _record, _diff, call = inst.run("disks", {"uuid": uuid(2)}, check=True)
    assert changed and call.warnings == ["QEMU had lost disk-00000002; it would be plugged again at its recorded address"]
    assert "disk-00000002" not in fake.devices and inst.sockets == [inst.where.qmp]  # check mode asks on a short connection
    changed, _record, _diff, call = inst.run("disks", {"uuid": uuid(2)})
    assert changed and call.warnings == ["QEMU had lost disk-00000002; plugged it again at its recorded address"]
    assert fake.placed("disk-00000002") == ("pci.0", 0x88)


def test_the_same_identity_with_other_properties_is_an_error(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1)
    inst = Instance(rd, fake, runtime([disk(1, directory)], []), monkeypatch)
    with pytest.raises(KvmError) as err:
        inst.run("disks", {"uuid": uuid(1), "path": f"{directory}/d1.img", "mode": "ro", "type": "scsi"})
    assert str(err.value) == ("disk disk-00000001 is plugged with mode 'rw' (asked: 'ro'), type 'paravirtual' (asked: 'scsi-hd'); "
                              "unplug it first (state=absent) to plug it again with other properties")
    with pytest.raises(KvmError, match=f"disk {directory}/d1.img is already used by disk-00000001 of vm1 .another uuid."):
        inst.run("disks", {"uuid": uuid(5), "path": f"{directory}/d1.img"})


def test_a_cd_gets_its_new_medium_live(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1, 2)
    inst = Instance(rd, fake, runtime([disk(1, directory, type="scsi-cd")], []), monkeypatch)
    changed, record, diff, _call = inst.run("disks", {"uuid": uuid(1), "path": f"{directory}/d2.img"})
    assert changed and record["path"] == f"{directory}/d2.img" and inst.saved()["disks"][0]["path"] == f"{directory}/d2.img"
    assert diff == {"before": f"disk-00000001 medium {directory}/d1.img\n", "after": f"disk-00000001 medium {directory}/d2.img\n"}
    assert fake.nodes["disk-00000001"]["attached"] == "disk-00000001"


def test_a_new_device_is_planned_plugged_and_saved(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1, 2)
    inst = Instance(rd, fake, runtime([disk(1, directory)], []), monkeypatch)
    changed, record, diff, _call = inst.run("disks", {"path": f"{directory}/d2.img", "type": "scsi-hd"}, check=True)
    assert changed and record["hvinfo"]["bus"] == "scsi.0" and fake.log == [] and inst.saved()["controllers"] == []
    assert diff == {"before": "disk-00000001 virtio-blk-pci pci.0 slot 0x10\n",
                    "after": f"scsi lsi53c895a pci.0 slot 0x11\ndisk-00000001 virtio-blk-pci pci.0 slot 0x10\n"
                             f"{record['hvinfo']['id']} scsi-hd scsi.0 scsi-id 0\n"}
    changed, record, _diff, _call = inst.run("disks", {"path": f"{directory}/d2.img", "type": "scsi-hd"})
    saved = inst.saved()
    assert changed and [c["hvinfo"]["id"] for c in saved["controllers"]] == ["scsi"] and saved["disks"][-1] == record
    assert set(fake.devices) == {"disk-00000001", "scsi", record["hvinfo"]["id"]}


def test_absent_unplugs_and_saves(fake, rd, tmp_path, monkeypatch):
    directory = images(tmp_path, 1, 2)
    inst = Instance(rd, fake, runtime([disk(1, directory), disk(2, directory)], [nic(1)]), monkeypatch)
    assert inst.run("disks", {"uuid": uuid(7)}, "absent")[0] is False
    changed, record, diff, _call = inst.run("nics", {"mac": nic(1)["mac"]}, "absent", check=True)
    assert changed and record["uuid"] == uuid(0x101) and "nic-00000101" in fake.devices and "nic-00000101" in diff["before"]
    changed, _record, _diff, _call = inst.run("nics", {"mac": nic(1)["mac"]}, "absent")
    assert changed and inst.saved()["nics"] == [] and "nic-00000101" not in fake.devices
    fake.unplug = "guest-error"
    with pytest.raises(KvmError, match=r"^device_del: the guest refused to release disk-00000002$"):
        inst.run("disks", {"path": f"{directory}/d2.img"}, "absent")
    assert [d["uuid"] for d in inst.saved()["disks"]] == [uuid(1), uuid(2)]


def test_a_missing_instance_or_one_that_is_not_running(rd, monkeypatch):
    with pytest.raises(KvmError, match="instance vm1 has no runtime file in"):
        asyncio.run(hotplug.load_running(writer(rd)))
    runtime_file.save(rd, "vm1", runtime([disk(1)], []))
    with pytest.raises(KvmError, match="instance vm1 is not running; hotplug needs a running QEMU"):
        asyncio.run(hotplug.load_running(writer(rd)))


def test_a_hotplug_on_a_target_whose_guest_arrived_confirms_it_first(fake, rd, tmp_path, monkeypatch):
    """The migration arrived but state=incoming has not confirmed it yet: the hotplug asks QEMU on the same session,
    drops the mark, and plugs (0.2.0 died here with 'asyncio.run() cannot be called from a running event loop')."""
    directory = images(tmp_path, 1, 2)
    inst = Instance(rd, fake, {**runtime([disk(1, directory)], []), "mark": "incoming"}, monkeypatch)
    fake.status = "inmigrate"
    with pytest.raises(KvmError, match="is a migration target still waiting for its migration"):
        inst.run("disks", {"path": f"{directory}/d2.img"})
    assert inst.saved()["mark"] == "incoming" and set(fake.devices) == {"disk-00000001"}
    fake.status = "running"
    inst.sockets.clear()
    changed, record, _diff, _call = inst.run("disks", {"path": f"{directory}/d2.img"})
    saved = inst.saved()
    assert changed and "mark" not in saved and saved["disks"][-1] == record and record["hvinfo"]["id"] in fake.devices
    assert inst.sockets == [inst.where.qmp]  # one connection for the whole call
