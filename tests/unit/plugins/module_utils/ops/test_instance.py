"""kvm_instance's pure parts (requested_spec, summary, differences, kept_controllers, merge_devices, plan_runtime)
and the states that need no QEMU (stopped, absent, a recovery or a start in check mode)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import spec as specs
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import instance
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

from ....builders import disk, images, load_runtime, runtime, uuid
from ....fakes.qemu import connect_to

VM1 = devices.derived_uuid("instance", "vm1")


def params(**extra: Any) -> dict[str, Any]:
    return {"name": "vm1", "uuid": None, "memory": 256, "vcpus": 1, "hvparams": {"accel": "tcg", "pci_hotplug_slots": 4},
            "disks": [{"path": "/srv/a.img"}, {"path": "/srv/b.img", "type": "scsi-cd"}], "nics": [{}, {"mac": "52:54:00:00:00:0B"}],
            "qemu_binary": "qemu-system-x86_64", "qemu_user": "root", "purge": False, "shutdown_timeout": 1, "unplug_timeout": 1, **extra}


def spec(**extra: Any) -> dict[str, Any]:
    return specs.requested_spec(params(**extra))


def as_stored(rt: dict[str, Any]) -> dict[str, Any]:
    """``rt`` as the next run reads it: written by runtime_file (sorted keys) and parsed back."""
    return dict(runtime_file.parse(runtime_file.dumps(rt), "vm1.runtime.json")[0])


# -- requested_spec ---------------------------------------------------------------------------------------


def test_requested_spec():
    got = spec()
    assert got["uuid"] == VM1 and got["uuid"] == devices.derived_uuid("instance", "vm1")
    assert got["hvparams"] == hvparams.normalize({"accel": "tcg", "pci_hotplug_slots": 4})
    assert got["disks"] == [devices.disk_record({"path": "/srv/a.img"}, VM1), devices.disk_record({"path": "/srv/b.img", "type": "scsi-cd"}, VM1)]
    assert got["nics"] == [devices.nic_record({}, VM1, 0), devices.nic_record({"mac": "52:54:00:00:00:0b"}, VM1, 1)]
    assert spec(uuid=uuid(5).upper())["uuid"] == uuid(5)
    assert spec(memory=128, vcpus=1)["memory"] == 128


@pytest.mark.parametrize("extra,message", [
    ({"memory": 127}, "memory must be at least 128"),
    ({"vcpus": 0}, "vcpus must be at least 1"),
    ({"uuid": "vm1"}, "instance uuid 'vm1' is not a UUID"),
    ({"hvparams": {"colour": "red"}}, "unknown hvparam 'colour'"),
    ({"disks": [{"path": "/a.img"}, {"path": "/a.img", "uuid": uuid(6)}]}, "two disks have the same path: /a.img"),
    ({"disks": [{"path": "/a.img", "uuid": uuid(1)}, {"path": "/b.img", "uuid": uuid(1).upper()}]}, f"two disks have the same uuid: {uuid(1)}"),
    ({"disks": [{"uri": "nbd://h/e"}, {"uri": "nbd://h/e", "uuid": uuid(2)}]}, "two disks have the same uri: nbd://h/e"),
    ({"nics": [{"mac": "52:54:00:00:00:01"}, {"mac": "52:54:00:00:00:01".upper(), "uuid": uuid(3)}]},
     "two nics have the same mac: 52:54:00:00:00:01"),
    ({"nics": [{"uuid": uuid(4)}, {"uuid": uuid(4), "mac": "52:54:00:00:00:02"}]}, f"two nics have the same uuid: {uuid(4)}"),
    ({"disks": [{"path": "rel.img"}]}, "must be absolute"),
])
def test_requested_spec_refusals(extra, message):
    with pytest.raises(KvmError) as err:
        spec(**extra)
    assert message in str(err.value)


# -- summary and differences ------------------------------------------------------------------------------------


def test_summary_is_the_comparable_part():
    got = specs.summary(spec())
    assert list(got) == ["memory", "vcpus", "hvparams", "disks", "nics"]
    assert got["disks"][0] == {"uuid": devices.disk_record({"path": "/srv/a.img"}, VM1)["uuid"], "path": "/srv/a.img", "uri": None,
                               "format": "raw", "mode": "rw", "type": "paravirtual"}
    assert got["disks"][1]["type"] == "scsi-cd" and got["disks"][1]["mode"] == "ro"
    assert got["nics"][1] == {"uuid": devices.nic_record({"mac": "52:54:00:00:00:0b"}, VM1)["uuid"], "mac": "52:54:00:00:00:0b",
                              "network": None}
    rt = instance.plan_runtime(spec(), "qemu")
    assert specs.summary(rt) == got  # placing devices changes nothing comparable


def test_differences():
    rt = as_stored(instance.plan_runtime(spec(), "qemu"))
    assert specs.differences(rt, spec()) == ([], [])
    pending, changes = specs.differences(rt, spec(memory=512, hvparams={"accel": "tcg", "pci_hotplug_slots": 4, "nic_type": "e1000"}))
    assert pending == ["memory: 256 -> 512", "hvparams.nic_type: 'paravirtual' -> 'e1000'"] and changes == []
    more = spec(disks=[{"path": "/srv/a.img"}, {"path": "/srv/c.img"}, {"path": "/srv/d.img"}], nics=[{}])
    assert specs.differences(rt, more)[1] == [
        "disks differ from the running instance (2 to add, 1 to remove): use kvmhv.qemu.kvm_disk_hotplug on a running instance",
        "nics differ from the running instance (0 to add, 1 to remove): use kvmhv.qemu.kvm_nic_hotplug on a running instance"]
    moved = spec(disks=[{"path": "/srv/a.img", "mode": "ro"}, {"path": "/srv/b.img", "type": "scsi-cd"}])
    assert specs.differences(rt, moved)[1][0].startswith("disks differ from the running instance (1 to add, 1 to remove)")


def test_differences_do_not_depend_on_key_order():
    tap_nics = [{"mac": "52:54:00:00:00:0c", "network": {"type": "tap", "ifname": "tap0", "bridge": "br0"}}]
    rt = as_stored(instance.plan_runtime(spec(nics=tap_nics), "qemu"))
    assert specs.differences(rt, spec(nics=tap_nics)) == ([], [])


# -- what a start keeps --------------------------------------------------------------------------------------------


def controllers_of(rt: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["kind"], c["hvinfo"]["driver"]) for c in rt["controllers"]]


def test_kept_controllers():
    old = as_stored(instance.plan_runtime(spec(hvparams={"disk_type": "scsi-hd", "pci_hotplug_slots": 30}), "qemu"))
    assert controllers_of(old) == [("pci-bridge", "pci-bridge"), ("scsi", "lsi53c895a")]
    same = hvparams.normalize({"disk_type": "scsi-hd"})
    assert specs.kept_controllers(old, same) == old["controllers"]
    other_type = hvparams.normalize({"disk_type": "scsi-hd", "scsi_controller_type": "megasas"})
    assert specs.kept_controllers(old, other_type) == old["controllers"][:1]
    assert specs.kept_controllers(old, hvparams.normalize({"machine_type": "q35"})) == []
    assert specs.kept_controllers(old, hvparams.normalize({"machine_type": "pc-i440fx-8.2"})) == old["controllers"]


def test_merge_devices_keeps_what_still_fits():
    hv = hvparams.normalize({"kvm_pci_reservations": 16})
    old = [{**devices.disk_record({"path": f"/d{n}.img", "uuid": uuid(n)}, VM1), "hvinfo": info} for n, info in enumerate([
        {"driver": "virtio-blk-pci", "id": "disk-0", "bus": "pci.0", "addr": "0x10"},
        {"driver": "virtio-blk-pci", "id": "disk-1", "bus": "pci.0", "addr": "0x0f"},  # below the window now
        {"driver": "virtio-blk-pci", "id": "disk-2", "bus": "pci.3", "addr": "0x1"},  # behind a bridge that is gone
        {"driver": "scsi-hd", "id": "disk-3", "bus": "scsi.0", "channel": 0, "scsi-id": 0, "lun": 0},
        {"driver": "virtio-blk-pci", "id": "disk-4", "bus": "pci.1", "addr": "0x2"},
    ])]
    new = [devices.disk_record({"path": f"/d{n}.img", "uuid": uuid(n)}, VM1) for n in range(6)]
    new[3]["type"] = "scsi-hd"
    new[4]["type"] = "scsi-hd"  # another driver than recorded
    merged = specs.merge_devices(old, new, hv, kinds.DISKS, {"pci.0", "pci.1", "scsi.0"})
    assert [m.get("hvinfo", {}).get("id") for m in merged] == ["disk-0", None, None, "disk-3", None, None]
    assert all(m["path"] == n["path"] for m, n in zip(merged, new, strict=True))
    nic9 = {"driver": "virtio-net-pci", "id": "nic-9", "bus": "pci.0", "addr": "0x11"}
    nics_old = [{**devices.nic_record({"uuid": uuid(9)}, VM1), "hvinfo": nic9}]
    nics_new = [devices.nic_record({"uuid": uuid(9)}, VM1)]
    assert specs.merge_devices(nics_old, nics_new, hv, kinds.NICS, {"pci.0"})[0]["hvinfo"]["id"] == "nic-9"
    e1000 = hvparams.normalize({"nic_type": "e1000"})
    assert "hvinfo" not in specs.merge_devices(nics_old, nics_new, e1000, kinds.NICS, {"pci.0"})[0]


def test_plan_runtime_keeps_the_recorded_layout_and_fills_holes():
    first = as_stored(instance.plan_runtime(spec(disks=[{"path": f"/srv/{n}.img"} for n in range(4)]), "qemu"))
    again = instance.plan_runtime(spec(disks=[{"path": f"/srv/{n}.img"} for n in range(4)]), "qemu", first)
    assert as_stored(again) == first
    changed = instance.plan_runtime(spec(disks=[{"path": f"/srv/{n}.img"} for n in (0, 2, 3, 9)]), "qemu", first)
    addrs = [d["hvinfo"]["addr"] for d in first["disks"]]
    assert [d["hvinfo"]["addr"] for d in changed["disks"]] == [addrs[0], addrs[2], addrs[3], addrs[1]]
    q35 = instance.plan_runtime(spec(hvparams={"machine_type": "q35", "pci_hotplug_slots": 2}), "qemu", first)
    assert {c["kind"] for c in q35["controllers"]} == {"pcie-root-port", "scsi"}
    assert all(d["hvinfo"]["bus"] != "pci.0" for d in q35["disks"] + q35["nics"])


def test_plan_runtime_passes_the_shortfall_warning_on():
    tight = {"accel": "tcg", "kvm_pci_reservations": 30, "pci_hotplug_slots": 0}
    first = as_stored(instance.plan_runtime(spec(hvparams=tight, disks=[{"path": "/a"}, {"path": "/b"}], nics=[]), "qemu"))
    warned: list[str] = []
    instance.plan_runtime(spec(hvparams={**tight, "pci_hotplug_slots": 2}, disks=[{"path": "/a"}, {"path": "/b"}], nics=[]), "qemu",
                          first, warned.append)
    assert warned == ["only 0 of pci_hotplug_slots=2 PCI devices can be hotplugged: the recorded devices keep their slots and no "
                      "more bridges or ports fit"]


# -- states that need no QEMU ---------------------------------------------------------------------------------------


class Op:
    """kvm_instance's states on a session, run to completion one at a time (as common.run does)."""

    def __init__(self, rd: RunDir, check: bool, extra: dict[str, Any]) -> None:
        self.call = Call(params(**extra), check=check, diff=True)
        self.session = Session(self.call, rd, paths(rd.path, "vm1"), writer=not check)
        self.op = instance.InstanceOp(self.session)

    def __getattr__(self, state: str) -> Any:
        async def go() -> dict[str, Any]:
            try:
                return await getattr(self.op, state)()
            finally:
                await self.session.hang_up()

        return lambda: asyncio.run(go())


def op(rd: RunDir, check: bool = False, **extra: Any) -> Op:
    return Op(rd, check, extra)


def with_images(tmp_path, **extra: Any) -> dict[str, Any]:
    for name in ("a.img", "b.img"):
        (tmp_path / name).write_bytes(b"\0" * 512)
    return {"disks": [{"path": str(tmp_path / "a.img")}, {"path": str(tmp_path / "b.img"), "type": "scsi-cd"}], **extra}


def test_stopped_marks_a_dead_instance_and_keeps_a_stopped_one(rd):
    rt = instance.plan_runtime(spec(), "qemu")
    runtime_file.save(rd, "vm1", rt)
    rd.write_atomic("vm1.qmp", "")  # plumbing a dead QEMU left
    result = op(rd).stopped()
    assert result["changed"] and result["diff"] == {"before": {"status": "died"}, "after": {"status": "stopped"}}
    assert runtime_file.load(rd, "vm1")[0]["mark"] == "stopped" and not rd.exists("vm1.qmp")
    assert result["instance"]["status"] == "stopped" and result["instance"]["pid"] is None
    again = op(rd).stopped()
    assert again["changed"] is False and "diff" not in again
    incoming = {**rt, "mark": "incoming"}
    runtime_file.save(rd, "vm1", incoming)
    assert op(rd).stopped()["changed"] is False and runtime_file.load(rd, "vm1")[0]["mark"] == "incoming"


def test_absent_removes_every_file_even_a_damaged_runtime(rd):
    for name in ("vm1.runtime.json", "vm1.pending.json", "vm1.serial.log", ".vm1.pid.tmp.dead", "vm2.runtime.json"):
        rd.write_atomic(name, "{ damaged")
    checked = op(rd, check=True).absent()
    assert checked["changed"] and rd.exists("vm1.runtime.json")
    result = op(rd).absent()
    assert result["changed"] and result["instance"]["status"] == "absent" and rd.listdir() == ["vm2.runtime.json"]
    assert op(rd).absent()["changed"] is False


def test_absent_reports_the_recorded_uuid(rd):
    runtime_file.save(rd, "vm1", instance.plan_runtime(spec(uuid=uuid(77)), "qemu"))
    assert op(rd, check=True).absent()["instance"]["uuid"] == uuid(77)
    assert op(rd).absent()["instance"]["uuid"] == uuid(77)


def test_a_start_in_check_mode_writes_nothing(rd, tmp_path):
    result = op(rd, check=True, **with_images(tmp_path)).running()
    assert result["changed"] and result["instance"]["status"] == "running" and rd.listdir() == []
    assert result["diff"]["before"] == {} and result["diff"]["after"] == specs.summary(instance.plan_runtime(
        spec(**with_images(tmp_path)), "qemu"))
    with pytest.raises(KvmError, match="No such file or directory"):
        op(rd, check=True, disks=[{"path": str(tmp_path / "gone.img")}]).running()


def test_a_dead_instance_is_recovered_from_its_file_and_the_task_changes_wait(rd, tmp_path):
    recorded = instance.plan_runtime(spec(**with_images(tmp_path)), "qemu")
    runtime_file.save(rd, "vm1", recorded)
    the_op = op(rd, check=True, memory=512, **with_images(tmp_path))
    result = the_op.running()
    assert result["recovered"] is True and result["changed"] is True
    assert the_op.call.warnings == ["recovering from the runtime file; not applied: memory: 256 -> 512"]
    assert result["diff"]["after"] == specs.summary(recorded)  # exactly what ran comes back


def test_a_failed_migration_target_is_never_started(rd, tmp_path):
    runtime_file.save(rd, "vm1", {**instance.plan_runtime(spec(**with_images(tmp_path)), "qemu"), "mark": "incoming"})
    with pytest.raises(KvmError, match="was a migration target whose migration never completed"):
        op(rd, check=True, **with_images(tmp_path)).running()


def test_a_former_copy_left_postmigrate_is_never_run_or_stopped_into_a_second_guest(rd, monkeypatch):
    runtime_file.save(rd, "vm1", instance.plan_runtime(spec(), "qemu"))
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)

    async def postmigrate(_session: Session) -> tuple[str, int | None]:
        return "postmigrate", 4242

    monkeypatch.setattr(Session, "status", postmigrate)
    for state in ("running", "stopped"):
        with pytest.raises(KvmError, match="former copy of a migration that completed"):
            getattr(op(rd), state)()
    assert "mark" not in runtime_file.load(rd, "vm1")[0]  # nothing recorded: a later start cannot run a second copy


def test_convergence_settles_the_journal_then_plans_once_and_reports_what_it_did(rd, tmp_path, fake, monkeypatch):
    """A killed run's hotplug of a listed disk had completed in QEMU: the journal is settled first, so the plan and the
    report have nothing left to plug (0.2.0 reported the plug it had planned before settling, and did none)."""
    directory = images(tmp_path, 1, 2)
    full = runtime([disk(1, directory), disk(2, directory)], [])
    load_runtime(fake, full)  # QEMU has both disks
    runtime_file.save(rd, "vm1", {**full, "disks": full["disks"][:1]})  # the file only the first: killed before the save
    journal.write(rd, paths(rd.path, "vm1"), [("disks", full["disks"][1])])
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    the_op = op(rd, disks=[{"path": f"{directory}/d{n}.img", "uuid": uuid(n)} for n in (1, 2)], nics=[])
    result = the_op.running()
    assert result["changed"] and result["devices"]["plug"] == [] and result["devices"]["unplug"] == []
    assert "an interrupted hotplug of disk-00000002 had completed in QEMU; the runtime file records it now" in the_op.call.warnings
    assert [d["uuid"] for d in runtime_file.load(rd, "vm1")[0]["disks"]] == [uuid(1), uuid(2)] and not journal.read(rd, paths(rd.path, "vm1"))
    assert "device_add" not in fake.commands()
    again = op(rd, disks=[{"path": f"{directory}/d{n}.img", "uuid": uuid(n)} for n in (1, 2)], nics=[]).running()
    assert again["changed"] is False


def test_an_unchanged_instance_whose_qemu_does_not_answer_is_ok_and_unknown(rd, tmp_path, monkeypatch):
    """Nothing to change and no journal to settle: no QMP connection is needed, so a QEMU that does not answer
    (stopped, busy) is reported as status unknown, not a failure (0.2.0 did so; the re-lay connected to settle a journal
    that was not there and failed after the connect timeout)."""
    directory = images(tmp_path, 1)
    full = runtime([disk(1, directory)], [])
    runtime_file.save(rd, "vm1", full)
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    tried: list[str] = []

    async def no_answer(socket_path: str, timeout: float = qmp.CONNECT_TIMEOUT) -> qmp.Monitor:
        tried.append(socket_path)
        raise qmp.KvmTimeout(f"cannot connect to QMP socket {socket_path}: timed out after {timeout:g}s")

    monkeypatch.setattr(qmp, "open_monitor", no_answer)
    result = op(rd, disks=[{"path": f"{directory}/d1.img", "uuid": uuid(1)}], nics=[],
                hvparams=full["hvparams"]).running()
    assert result["changed"] is False and result["instance"]["status"] == "unknown"
    assert tried and not journal.read(rd, paths(rd.path, "vm1"))
