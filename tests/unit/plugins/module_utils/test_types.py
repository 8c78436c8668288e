"""The runtime contract: every key an upgraded runtime and its records hold is declared in types.py, with its type.

Runtimes come from every path that writes one: the legacy and version-1
upgrades, a new start on pc and q35 with every disk and NIC kind, and the
records hotplug and convergence add. A key the code writes without
declaring it (or a declared key holding another type) fails here.
"""

from __future__ import annotations

import json
import types as pytypes
import typing
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils import types
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvinfo, hvparams, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import converge
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import transaction as tx
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

from ...builders import LEGACY

INST = "00000000-0000-4000-8000-000000000000"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def problems(value: Any, hint: Any, where: str = "runtime") -> list[str]:
    """Where ``value`` does not match ``hint`` (TypedDicts: no undeclared key, every value of its declared type)."""
    if hint is Any:
        return []
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, pytypes.UnionType):
        if value is None and type(None) in args:
            return []
        arms = [arg for arg in args if arg is not type(None)]
        if len(arms) == 1:
            return problems(value, arms[0], where)
        return [] if any(not problems(value, arg, where) for arg in arms) else [f"{where}: {value!r} is none of {arms}"]
    if typing.is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        declared = typing.get_type_hints(hint)
        found = [f"{where}.{key}: not declared in {hint.__name__}" for key in value if key not in declared]
        for key in value.keys() & declared.keys():
            found += problems(value[key], declared[key], f"{where}.{key}")
        return found
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [p for pos, item in enumerate(value) for p in problems(item, args[0], f"{where}[{pos}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: not a mapping"]
        return [p for key, item in value.items() for p in problems(key, args[0], f"{where} key") + problems(item, args[1], f"{where}.{key}")]
    if hint is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: {value!r} is not an int"]
    return [] if isinstance(value, hint) else [f"{where}: {value!r} is not a {hint.__name__}"]


def new(hv_in: dict[str, Any]) -> dict[str, Any]:
    hv = hvparams.normalize(hv_in)
    disk_specs = [{"path": "/d0.img"}, {"path": "/d1.img", "type": "scsi-hd", "format": "qcow2"},
                  {"type": "scsi-cd", "uuid": uuid(7)}, {"uri": "iscsi://t.example/iqn.2026-01.x:t/1", "type": "scsi-block"}]
    if not hvparams.is_q35(hv):
        disk_specs.append({"path": "/d2.img", "type": "ide", "mode": "ro"})
    disks = [devices.disk_record(spec, INST) for spec in disk_specs]
    nics = [devices.nic_record(spec, INST, i) for i, spec in enumerate([
        {"network": {"type": "tap", "ifname": "tap0", "bridge": "br0"}}, {"mac": "52:54:00:00:00:09", "network": {"type": "user"}}, {}])]
    return dict(construct.new_runtime("vm1", INST, 256, 2, hv, "qemu-system-x86_64", disks, nics))


def version_1() -> dict[str, Any]:
    rt = new({"disk_type": "scsi-hd", "pci_hotplug_slots": 0})
    rt = json.loads(json.dumps(rt))
    rt.update(version=1, stopped=True)
    rt["kvm_cmd"] += ["-device", "lsi53c895a,id=scsi"]
    rt["controllers"] = []
    rt["disks"] = [d for d in rt["disks"] if d["hvinfo"]["driver"] == "scsi-hd"]
    for disk in rt["disks"]:
        del disk["type"]
        disk.pop("uri", None)
    rt["nics"] = []
    return rt


def every_runtime() -> dict[str, dict[str, Any]]:
    stored = {
        "legacy": json.loads(json.dumps(LEGACY)),
        "version 1": version_1(),
        "pc": new({"kernel_path": "/boot/vmlinuz", "kernel_args": "console=ttyS0", "cpu_type": "host,+avx2"}),
        "q35": new({"machine_type": "q35", "disk_type": "scsi-hd", "scsi_controller_type": "virtio-scsi-pci", "pci_hotplug_slots": 3}),
        "incoming": {**new({}), "mark": "incoming"},
    }
    upgraded = {name: dict(upgrade.upgrade(json.loads(json.dumps(data)))[0]) for name, data in stored.items()}
    # records the operations add to a running instance
    rt = upgraded["pc"]
    hot_cd = devices.disk_record({"path": "/hot.img", "type": "scsi-cd"}, INST)
    record = tx.place(construct.bus_state(rt), kinds.DISKS, hot_cd)[-1].record
    assert problems(record, types.DiskRecord, "place") == []
    planned = converge.plan(rt, {"disks": [*rt["disks"], hot_cd], "nics": [devices.nic_record({"mac": "52:54:00:00:00:0a"}, INST)]},
                            purge=True)
    upgraded["hotplugged"] = dict(converge.after(rt, planned))
    return upgraded


@pytest.mark.parametrize("name", ["legacy", "version 1", "pc", "q35", "incoming", "hotplugged"])
def test_every_key_is_declared_with_its_type(name):
    rt = every_runtime()[name]
    assert problems(rt, types.Runtime) == []


def test_the_runtimes_cover_every_record_and_controller_kind():
    """The test above sees every kind (else a key of a missing kind would go unchecked)."""
    runtimes = every_runtime()
    kinds = {c["kind"] for rt in runtimes.values() for c in rt["controllers"]}
    drivers = {d["hvinfo"]["driver"] for rt in runtimes.values() for kind in ("disks", "nics") for d in rt[kind]}
    networks = {(n.get("network") or {}).get("type") for rt in runtimes.values() for n in rt["nics"]}
    assert kinds == {"scsi", "pci-bridge", "pcie-root-port"}
    assert {"virtio-blk-pci", "scsi-hd", "scsi-cd", "scsi-block", "ide-hd", "virtio-net-pci", "e1000"} <= drivers
    assert networks == {"tap", "user", None}
    assert {rt.get("mark") for rt in runtimes.values()} == {None, "stopped", "incoming"}
    assert any("legacy_hvparams" in rt for rt in runtimes.values()) and any(d.get("uri") for rt in runtimes.values() for d in rt["disks"])


def test_hvinfo_keys_are_the_declared_ones():
    declared = set(typing.get_type_hints(types.HvInfo))
    assert set(hvinfo.KEY_ORDER) == declared
    allowed = {key for keys in [*hvinfo._REQUIRED.values(), *hvinfo._OPTIONAL.values()] for key in keys}
    assert allowed == declared
    assert set(hvinfo._VALUE_RULES) == declared - {"driver", "id", "bus"}


def test_the_checker_itself_finds_undeclared_keys_and_wrong_types():
    assert problems({"version": 2, "colour": "red"}, types.Runtime) == ["runtime.colour: not declared in Runtime"]
    assert problems({"disks": [{"hvinfo": {"scsi-id": True}}]}, types.Runtime) == ["runtime.disks[0].hvinfo.scsi-id: True is not an int"]
    assert problems({"nics": [{"network": {"type": "tap", "mtu": 9000}}]}, types.Runtime) == [
        "runtime.nics[0].network.mtu: not declared in Network"]
    assert problems({"name": None, "memory": "256"}, types.Runtime) == ["runtime.memory: '256' is not an int"]
    assert problems({"controllers": [{"kind": "scsi", "hvinfo": {"addr": 16}}]}, types.Runtime) == [
        "runtime.controllers[0].hvinfo.addr: 16 is not a str"]


@pytest.mark.parametrize("where", ["top", "disk", "nic"])
def test_undeclared_keys_do_not_survive_the_upgrade(where):
    stored = json.loads(json.dumps(new({})))
    target = {"top": stored, "disk": stored["disks"][0], "nic": stored["nics"][0]}[where]
    target["serial"] = "KEYINJ"
    try:
        rt = upgrade.upgrade(stored)[0]
    except KvmError:
        return  # refused: fine
    assert problems(rt, types.Runtime) == []


def test_records_of_a_kind():
    rt = every_runtime()["pc"]
    assert kinds.DISKS.records(rt) is rt["disks"] and kinds.NICS.records(rt) is rt["nics"]
    assert kinds.NICS.records({"disks": []}) == []
    assert kinds.all_hvinfo(rt) == [dev["hvinfo"] for dev in [*rt["controllers"], *rt["disks"], *rt["nics"]]]
    assert kinds.all_hvinfo({"disks": []}) == []


@pytest.mark.parametrize("where,message", [("top", "runtime has field(s) 'serial'"), ("disk", "runtime disk 0 has field(s) 'serial'"),
                                           ("nic", "runtime nic 0 has field(s) 'serial'")])
def test_an_undeclared_key_is_refused_by_name(where, message):
    stored = json.loads(json.dumps(new({})))
    target = {"top": stored, "disk": stored["disks"][0], "nic": stored["nics"][0]}[where]
    target["serial"] = "KEYINJ"
    with pytest.raises(KvmError) as err:
        upgrade.upgrade(stored)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_keys_of_is_what_the_checker_reads():
    for record_type in (types.Runtime, types.DiskRecord, types.NicRecord, types.Controller, types.Network, types.HvInfo):
        assert types.keys_of(record_type) == set(typing.get_type_hints(record_type))
