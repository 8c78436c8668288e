"""Live convergence: plan() and after() decide (adds in list order, holes first, purge or keep, media changes, refusals);
converge() carries a plan out against the fake QEMU."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import converge
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.converge import Plan
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import journal, runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths

from ....builders import INST, disk, images, load_runtime, nic, runtime, uuid


async def converged(fake: Any, rd: Any, rt: Any, spec: dict[str, Any], timeout: float) -> Any:
    """Plan (purge) and execute on the fake QEMU, as kvm_instance does on a running instance."""
    session = Session(Call({}), rd, paths(rd.path, "vm1"), writer=True)
    return await converge.execute(session, qmp.Monitor(fake), rt, converge.plan(rt, spec, True), spec, timeout)


def where_is(rt: dict[str, Any]) -> dict[str, str]:
    """device uuid -> its address, as 'bus addr'."""
    return {d["uuid"]: f"{d['hvinfo']['bus']} {d['hvinfo'].get('addr', d['hvinfo'].get('scsi-id'))}"
            for kind in ("disks", "nics") for d in rt[kind]}


def test_nothing_to_do():
    rt = runtime([disk(1), disk(2)], [nic(1)])
    the_plan = converge.plan(rt, {"disks": [disk(1), disk(2)], "nics": [nic(1)]}, purge=True)
    assert the_plan.empty and the_plan.report() == {"unplug": [], "plug": [], "media": [], "kept": []}
    assert converge.after(rt, the_plan) == rt


def test_adds_in_list_order_disks_then_nics():
    rt = runtime([disk(1)], [nic(1)])
    spec = {"disks": [disk(1), disk(9), disk(3), disk(7)], "nics": [nic(5), nic(1), nic(2)]}
    the_plan = converge.plan(rt, spec, purge=False)
    assert [i.record["uuid"] for i in the_plan.adds] == [uuid(9), uuid(3), uuid(7), uuid(0x105), uuid(0x102)]
    assert [i.kind for i in the_plan.adds] == ["disks"] * 3 + ["nics"] * 2
    assert [i.record["hvinfo"]["addr"] for i in the_plan.adds] == ["0x12", "0x13", "0x14", "0x15", "0x16"]
    assert all(i.record["type"] == "paravirtual" for i in the_plan.adds[:3])
    assert rt == runtime([disk(1)], [nic(1)])  # plan() changes nothing


@pytest.mark.parametrize("purge", [True, False])
def test_holes_are_filled_first_and_purge_decides_what_leaves(purge):
    rt = runtime([disk(1), disk(2), disk(3)], [nic(1), nic(2)])
    assert list(where_is(rt).values()) == ["pci.0 0x10", "pci.0 0x11", "pci.0 0x12", "pci.0 0x13", "pci.0 0x14"]
    spec = {"disks": [disk(1), disk(3), disk(4)], "nics": [nic(2), nic(3)]}
    the_plan = converge.plan(rt, spec, purge=purge)
    report = the_plan.report()
    if purge:
        assert [i.id for i in the_plan.removes] == [rt["disks"][1]["hvinfo"]["id"], rt["nics"][0]["hvinfo"]["id"]]
        assert report["kept"] == [] and [p["hvinfo"]["addr"] for p in report["plug"]] == ["0x11", "0x13"]  # the holes, lowest first
    else:
        assert the_plan.removes == [] and report["kept"] == [rt["disks"][1]["hvinfo"]["id"], rt["nics"][0]["hvinfo"]["id"]]
        assert [p["hvinfo"]["addr"] for p in report["plug"]] == ["0x15", "0x16"]
    done = converge.after(rt, the_plan)
    want = {d["uuid"] for d in spec["disks"] + spec["nics"]} | (set() if purge else {uuid(2), uuid(0x101)})
    assert {d["uuid"] for d in done["disks"] + done["nics"]} == want
    allocator.BusState.build(done["hvparams"], done["controllers"], [*done["disks"], *done["nics"]])  # no address twice
    assert converge.plan(done, spec, purge=purge).adds == []


def test_scsi_holes_and_a_new_controller_before_its_disk():
    rt = runtime([disk(n, type="scsi-hd") for n in range(1, 8)], [])
    assert [c["hvinfo"]["id"] for c in rt["controllers"]] == ["scsi"]
    spec = {"disks": [disk(n, type="scsi-hd") for n in (1, 2, 3, 5, 6, 7, 10, 11)], "nics": []}
    the_plan = converge.plan(rt, spec, purge=True)
    assert [(i.kind, i.id) for i in the_plan.adds] == [("disks", "disk-0000000a"), ("controllers", "scsi1"), ("disks", "disk-0000000b")]
    assert (the_plan.adds[0].record["hvinfo"]["bus"], the_plan.adds[0].record["hvinfo"]["scsi-id"]) == ("scsi.0", 3)
    assert the_plan.adds[1].record == {"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi1", "bus": "pci.0", "addr": "0x11"}}
    assert (the_plan.adds[2].record["hvinfo"]["bus"], the_plan.adds[2].record["hvinfo"]["scsi-id"]) == ("scsi1.0", 0)
    done = converge.after(rt, the_plan)
    assert [c["hvinfo"]["id"] for c in done["controllers"]] == ["scsi", "scsi1"]


def test_a_cd_medium_changes_live_and_after_records_it():
    cd = disk(1, type="scsi-cd")
    rt = runtime([cd, disk(2)], [])
    new_medium = {**cd, "path": "/srv/other.iso", "format": "qcow2"}
    eject = devices.disk_record({"type": "scsi-cd", "uuid": uuid(1)}, INST)
    the_plan = converge.plan(rt, {"disks": [{**cd, "path": "/srv/other.iso"}, disk(2)], "nics": []}, purge=True)
    assert the_plan.report()["media"] == [{"id": "disk-00000001", "path": "/srv/other.iso"}] and not the_plan.adds
    done = converge.after(rt, Plan(media=[(rt["disks"][0], new_medium)]))
    assert (done["disks"][0]["path"], done["disks"][0]["format"]) == ("/srv/other.iso", "qcow2")
    assert done["disks"][0]["hvinfo"] == rt["disks"][0]["hvinfo"] and rt["disks"][0]["path"] == "/srv/d1.img"
    ejected = converge.plan(rt, {"disks": [eject, disk(2)], "nics": []}, purge=True)
    assert ejected.report()["media"] == [{"id": "disk-00000001", "path": None}]
    assert converge.after(rt, ejected)["disks"][0]["path"] is None


@pytest.mark.parametrize("change,problem", [
    (lambda s: s["disks"][0].update(mode="ro"), "disk-00000001 differs: mode 'rw' (asked: 'ro')"),
    (lambda s: s["disks"][0].update(format="qcow2"), "disk-00000001 differs: format 'raw' (asked: 'qcow2')"),
    (lambda s: s["disks"][0].update(type="scsi-hd"), "disk-00000001 differs: type 'paravirtual' (asked: 'scsi-hd')"),
    (lambda s: s["disks"][0].update(path="/srv/moved.img"), "disk-00000001 differs: path '/srv/d1.img' (asked: '/srv/moved.img')"),
    (lambda s: s["disks"][1].update(mode="rw"), "disk-00000002 differs: mode 'ro' (asked: 'rw')"),  # a cd's mode is no medium
    (lambda s: s["disks"][1].update(mode="rw", path="/srv/x.iso"),
     "disk-00000002 differs: path '/srv/d2.img' (asked: '/srv/x.iso'), mode 'ro' (asked: 'rw')"),  # nor is a new medium with it
    (lambda s: s["nics"][0].update(mac="52:54:00:00:00:99"), "differs: mac"),
    (lambda s: s["nics"][0].update(network={"type": "user"}), "differs: network None (asked: {'type': 'user'})"),
])
def test_property_changes_are_refused(change, problem):
    rt = runtime([disk(1), disk(2, type="scsi-cd")], [nic(1)])
    spec = {"disks": [disk(1), disk(2, type="scsi-cd")], "nics": [nic(1)]}
    change(spec)
    with pytest.raises(KvmError) as err:
        converge.plan(rt, spec, purge=True)
    assert problem in str(err.value) and str(err.value).endswith(
        "these cannot change on a running instance (a scsi-cd's medium can); unplug and plug them again, or change them at the next start")


def test_every_problem_is_named_at_once_and_ide_cannot_be_hotplugged():
    rt = runtime([disk(1), disk(2)], [])
    spec = {"disks": [disk(1, mode="ro"), disk(2, format="qcow2")], "nics": []}
    with pytest.raises(KvmError, match=r"disk-00000001 differs: mode .*; disk-00000002 differs: format"):
        converge.plan(rt, spec, purge=False)
    with pytest.raises(KvmError, match=r"disk /srv/d3\.img: ide disks cannot be hotplugged .QEMU.s IDE bus has no hotplug.; "
                                       r"use a SCSI or paravirtual type, or add it at the next start"):
        converge.plan(rt, {"disks": [disk(1), disk(2), disk(3, type="ide")], "nics": []}, purge=False)


def test_a_cd_asked_with_a_uri_converges():
    cd = disk(1, type="scsi-cd")
    rt = runtime([cd], [])
    spec = {"disks": [devices.disk_record({"uri": "nbd://h/cd", "type": "scsi-cd", "uuid": uuid(1)}, INST)], "nics": []}
    done = converge.after(rt, converge.plan(rt, spec, purge=True))
    assert converge.plan(done, spec, purge=True).empty


def test_a_cd_medium_may_change_its_format():
    rt = runtime([disk(1, type="scsi-cd")], [])
    spec = {"disks": [disk(1, type="scsi-cd", path="/srv/new.qcow2", format="qcow2")], "nics": []}
    assert len(converge.plan(rt, spec, purge=True).media) == 1


# -- a property: converging once reaches the lists ------------------------------------------------------

SPECS = st.tuples(st.lists(st.sampled_from(["paravirtual", "scsi-hd", "scsi-cd"]), max_size=12),  # recorded disks
                  st.integers(min_value=0, max_value=4),  # recorded NICs
                  st.lists(st.booleans(), max_size=16),  # which recorded devices stay in the lists
                  st.lists(st.sampled_from(["paravirtual", "scsi-hd", "scsi-cd", "nic"]), max_size=12),  # devices added to the lists
                  st.booleans())  # purge


@settings(max_examples=120, deadline=None)
@given(SPECS, st.sampled_from(["pc", "q35"]))
def test_after_a_plan_the_instance_has_exactly_the_lists(case, machine):
    kinds, nic_count, keep, added, purge = case
    rt = runtime([disk(n + 1, type=t) for n, t in enumerate(kinds)], [nic(n + 1) for n in range(nic_count)], machine_type=machine,
                 pci_hotplug_slots=20)
    recorded = [("disks", d) for d in rt["disks"]] + [("nics", n) for n in rt["nics"]]
    stays = [(kind, dev) for pos, (kind, dev) in enumerate(recorded) if pos >= len(keep) or keep[pos]]
    spec: dict[str, list] = {"disks": [], "nics": []}
    for kind, dev in stays:
        spec[kind].append(disk(int(dev["uuid"][:8], 16), type=dev["type"]) if kind == "disks" else nic(int(dev["uuid"][:8], 16) - 0x100))
    for pos, kind in enumerate(added):
        spec["nics" if kind == "nic" else "disks"].append(nic(0x50 + pos) if kind == "nic" else disk(0x50 + pos, type=kind))
    the_plan = converge.plan(rt, spec, purge)
    done = converge.after(rt, the_plan)
    wanted = {d["uuid"] for kind in ("disks", "nics") for d in spec[kind]}
    left_out = {dev["uuid"] for _kind, dev in recorded} - wanted
    assert {d["uuid"] for kind in ("disks", "nics") for d in done[kind]} == wanted | (set() if purge else left_out)
    assert {i.record["uuid"] for i in the_plan.removes} == (left_out if purge else set())
    assert len(the_plan.kept) == (0 if purge else len(left_out))
    for kind, dev in recorded:  # what stays keeps its address
        if dev["uuid"] in wanted or not purge:
            assert next(d for d in done[kind] if d["uuid"] == dev["uuid"])["hvinfo"] == dev["hvinfo"]
    allocator.BusState.build(done["hvparams"], done["controllers"], [*done["disks"], *done["nics"]])  # every address once
    upgrade.upgrade(json.loads(json.dumps(done)))  # a runtime the next run accepts
    assert converge.plan(done, spec, purge).adds == [] and converge.plan(done, spec, purge).removes == []


# -- converge() against the fake QEMU ----------------------------------------------------------------------


def test_converge_unplugs_changes_media_then_adds_and_saves(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2, 3, 4)
    (tmp_path / "d4.iso").write_bytes(b"\0" * 2048)
    cd = disk(3, directory, type="scsi-cd")
    rt = runtime([disk(1, directory), disk(2, directory), cd], [nic(1, network={"type": "user"})])
    load_runtime(fake, rt)
    where = paths(rd.path, "vm1")
    runtime_file.save(rd, "vm1", rt)
    spec = {"disks": [disk(1, directory), {**cd, "path": f"{directory}/d4.iso"}, disk(4, directory)], "nics": []}
    done = asyncio.run(converged(fake, rd, rt, spec, 1.0))
    commands = fake.commands()
    assert commands.index("device_del") < commands.index("blockdev-open-tray") < commands.index("device_add")
    assert set(fake.devices) == {"scsi", "disk-00000001", "disk-00000003", "disk-00000004"}
    hole = rt["disks"][1]["hvinfo"]["addr"]
    assert fake.placed("disk-00000004") == ("pci.0", int(hole, 16) << 3)  # the hole disk 2 left
    assert runtime_file.load(rd, "vm1")[0] == done and journal.read(rd, where) == []
    assert done["disks"][1]["path"] == f"{directory}/d4.iso" and done["nics"] == []


def test_devices_that_do_not_leave_stay_recorded_and_fail_the_task_after_the_adds(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2, 3)
    rt = runtime([disk(1, directory), disk(2, directory)], [])
    load_runtime(fake, rt)
    fake.unplug_of = {"disk-00000002": "silent"}
    paths(rd.path, "vm1")
    spec = {"disks": [disk(3, directory)], "nics": []}
    with pytest.raises(KvmError) as err:
        asyncio.run(converged(fake, rd, rt, spec, 0.2))
    assert str(err.value).startswith("unplug: these devices did not leave and stay recorded: disk-00000002 (no DEVICE_DELETED")
    saved = runtime_file.load(rd, "vm1")[0]
    assert [d["uuid"] for d in saved["disks"]] == [uuid(2), uuid(3)] and set(fake.devices) == {"disk-00000002", "disk-00000003"}
    assert saved["disks"][1]["hvinfo"]["addr"] == "0x10"  # the slot disk 1 freed; disk 2 still holds 0x11


def test_an_unplug_that_fails_does_not_turn_into_a_drift_error(fake, rd, tmp_path):
    directory = images(tmp_path, 1, 2, 3, 4)
    rt = runtime([disk(1, directory), disk(2, directory)], [])
    load_runtime(fake, rt)
    fake.unplug_of = {"disk-00000002": "silent"}
    spec = {"disks": [disk(3, directory), disk(4, directory)], "nics": []}
    the_plan = converge.plan(rt, spec, purge=True)
    assert [i.record["hvinfo"]["addr"] for i in the_plan.adds] == ["0x10", "0x11"]  # 0x11 is disk 2's
    with pytest.raises(KvmError) as err:
        asyncio.run(converged(fake, rd, rt, spec, 0.2))
    assert "did not leave" in str(err.value) and "drift" not in str(err.value)
