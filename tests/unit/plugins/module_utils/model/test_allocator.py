"""Bus allocator: concrete vectors for every placement rule on pc and q35, then properties.

The properties (hypothesis) run random topologies and plug/unplug sequences
against an oracle written here from the placement rules: every allocation
must be the lowest free leaf or target the oracle computes, and a refusal
must be one the oracle predicts (so an allocator that refuses too early
fails, instead of the case being skipped).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, hvparams

INST = "00000000-0000-4000-8000-000000000000"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def disks(n: int, start: int = 1, **extra) -> list[dict]:
    return [devices.disk_record({"path": f"/d{i}.img", "uuid": uuid(start + i), **extra}, INST) for i in range(n)]


def nics(n: int) -> list[dict]:
    return [devices.nic_record({"uuid": uuid(0x100 + i)}, INST) for i in range(n)]


def place(hv_in: dict, d: list[dict], n: list[dict] | None = None, controllers: list | None = None) -> tuple[list, allocator.BusState]:
    ctl = list(controllers or [])
    state = allocator.assign(ctl, d, n or [], hvparams.normalize(hv_in))
    return ctl, state


def test_pc_disks_first_then_nics_from_0x10_and_one_bridge_on_top():
    d, n = disks(3), nics(2)
    ctl, state = place({}, d, n)
    assert [x["hvinfo"]["addr"] for x in d] == ["0x10", "0x11", "0x12"]
    assert [x["hvinfo"]["addr"] for x in n] == ["0x13", "0x14"]
    assert d[0]["hvinfo"] == {"driver": "virtio-blk-pci", "id": "disk-00000001", "bus": "pci.0", "addr": "0x10"}
    assert d[0]["type"] == "paravirtual"
    # 5 cold devices + 32 for hotplug > the 16-slot window: one bridge, at the top of the window
    bridge = {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f",
              "chassis_nr": 1, "shpc": False, "mem-reserve": 2 << 20, "pref64-reserve": 2 << 20}
    assert ctl == [{"kind": "pci-bridge", "hvinfo": bridge}]
    assert len(state.free_pci_leaves()) == 10 + 31


def test_no_bridge_when_the_window_is_enough():
    ctl, state = place({"pci_hotplug_slots": 4}, disks(2), nics(1))
    assert ctl == [] and len(state.free_pci_leaves()) == 13


def test_pc_devices_continue_on_bridges_after_the_window():
    d = disks(64)
    ctl, state = place({"pci_hotplug_slots": 0}, d)
    # 14 root slots + 31 + 31 >= 64: two bridges, at 0x1f and 0x1e
    assert [c["hvinfo"]["addr"] for c in ctl] == ["0x1f", "0x1e"]
    assert [c["hvinfo"]["id"] for c in ctl] == ["pci.1", "pci.2"]
    on_root = [x for x in d if x["hvinfo"]["bus"] == "pci.0"]
    assert [x["hvinfo"]["addr"] for x in on_root] == [hex(s) for s in range(0x10, 0x1e)]
    assert (d[14]["hvinfo"]["bus"], d[14]["hvinfo"]["addr"]) == ("pci.1", "0x1")
    assert (d[44]["hvinfo"]["bus"], d[44]["hvinfo"]["addr"]) == ("pci.1", "0x1f")
    assert (d[45]["hvinfo"]["bus"], d[63]["hvinfo"]["addr"]) == ("pci.2", "0x13")
    assert len(state.free_pci_leaves()) == 12


def test_q35_every_device_on_its_own_root_port_packed_eight_to_a_slot():
    d, n = disks(2), nics(1)
    ctl, state = place({"machine_type": "q35", "pci_hotplug_slots": 13}, d, n)
    ports = [c["hvinfo"] for c in ctl]
    assert len(ports) == 16 and all(c["kind"] == "pcie-root-port" for c in ctl)
    assert [p["addr"] for p in ports[:9]] == [f"0x10.{f}" for f in range(8)] + ["0x11.0"]
    assert ports[0] == {"driver": "pcie-root-port", "id": "pci.1", "bus": "pcie.0", "addr": "0x10.0", "multifunction": True,
                        "chassis": 1, "port": 1}
    assert "multifunction" not in ports[1] and ports[8]["multifunction"] is True
    assert [x["hvinfo"]["bus"] for x in d + n] == ["pci.1", "pci.2", "pci.3"]
    assert all(x["hvinfo"]["addr"] == "0x0" for x in d + n)
    assert len(state.free_pci_leaves()) == 13


def test_q35_capacity_is_the_window_times_eight():
    with pytest.raises(KvmError) as err:
        place({"machine_type": "q35", "pci_hotplug_slots": 120}, disks(1))
    assert "pci_hotplug_slots=120" in str(err.value) and "kvm_pci_reservations" in str(err.value)
    place({"machine_type": "q35", "pci_hotplug_slots": 119}, disks(1))
    place({"machine_type": "q35", "pci_hotplug_slots": 200, "kvm_pci_reservations": 4}, disks(1))


def test_scsi_disks_fill_controllers_in_order_and_controllers_are_pci_devices():
    d, n = disks(20), nics(1)
    ctl, _state = place({"disk_type": "scsi-hd", "pci_hotplug_slots": 0}, d, n)
    assert [(c["kind"], c["hvinfo"]["id"], c["hvinfo"]["addr"]) for c in ctl] == [
        ("scsi", "scsi", "0x10"), ("scsi", "scsi1", "0x11"), ("scsi", "scsi2", "0x12")]
    assert [(x["hvinfo"]["bus"], x["hvinfo"]["scsi-id"]) for x in d[:8]] == [("scsi.0", i) for i in range(7)] + [("scsi1.0", 0)]
    assert d[19]["hvinfo"]["bus"] == "scsi2.0" and d[19]["hvinfo"]["scsi-id"] == 5
    assert n[0]["hvinfo"]["addr"] == "0x13"


def test_per_disk_types_mix_pci_scsi_and_ide():
    d = [*disks(1), *disks(1, start=2, type="scsi-cd"), *disks(1, start=3, type="ide"), *disks(1, start=4)]
    ctl, _state = place({"pci_hotplug_slots": 0}, d)
    assert [x["type"] for x in d] == ["paravirtual", "scsi-cd", "ide", "paravirtual"]
    assert [c["hvinfo"]["addr"] for c in ctl] == ["0x10"]  # the controller first
    assert [x["hvinfo"].get("addr") for x in d] == ["0x11", None, None, "0x12"]
    assert d[1]["hvinfo"]["driver"] == "scsi-cd" and d[1]["hvinfo"]["scsi-id"] == 0
    assert d[2]["hvinfo"] == {"driver": "ide-hd", "id": "disk-00000003", "bus": "ide.0", "unit": 0}
    with pytest.raises(KvmError, match="q35 has no IDE bus"):
        place({"machine_type": "q35"}, disks(1, type="ide"))


def test_recorded_addresses_are_kept_and_holes_filled_lowest_first():
    d = disks(4)
    ctl, _state = place({"pci_hotplug_slots": 2}, d)
    first = [x["hvinfo"] for x in d]
    del d[1]  # a hole at 0x11
    d.append(disks(1, start=9)[0])
    ctl2, _state = place({"pci_hotplug_slots": 2}, d, controllers=ctl)
    assert [x["hvinfo"] for x in d[:3]] == [first[0], first[2], first[3]] and ctl2 == ctl
    assert d[3]["hvinfo"]["addr"] == "0x11"


def test_hotplug_places_into_the_topology_and_adds_a_scsi_controller_when_full():
    d = disks(7)
    ctl, _unused = place({"disk_type": "scsi-hd", "pci_hotplug_slots": 3}, d)
    state = allocator.BusState.build(hvparams.normalize({"disk_type": "scsi-hd", "pci_hotplug_slots": 3}), ctl, d)
    info, added = allocator.place_disk(state, disks(1, start=50)[0])
    assert [c["hvinfo"]["id"] for c in added] == ["scsi1"] and info["bus"] == "scsi1.0" and info["scsi-id"] == 0
    assert added[0]["hvinfo"]["addr"] == "0x11"
    nic = allocator.place_nic(state, nics(1)[0])
    assert nic["addr"] == "0x12"


def test_exhausted_hotplug_capacity_names_the_hvparam():
    d = disks(1)
    ctl, _unused = place({"pci_hotplug_slots": 0, "kvm_pci_reservations": 31}, d)
    assert d[0]["hvinfo"]["addr"] == "0x1f" and ctl == []
    state = allocator.BusState.build(hvparams.normalize({"pci_hotplug_slots": 0, "kvm_pci_reservations": 31}), ctl, d)
    with pytest.raises(KvmError) as err:
        allocator.place_nic(state, nics(1)[0])
    assert "pci_hotplug_slots=0" in str(err.value) and "next start" in str(err.value)


def test_describe_reports_every_bus():
    d, n = [*disks(2), *disks(2, start=5, type="scsi-hd")], nics(1)
    _ctl, state = place({}, d, n)
    report = allocator.describe(state)
    assert report["pci"]["used"] == ["0x10", "0x11", "0x12", "0x13", "0x1f"]
    assert report["bridges"][0]["id"] == "pci.1" and report["bridges"][0]["free"] == 31
    assert report["scsi"] == [{"id": "scsi", "bus": "scsi.0", "driver": "lsi53c895a", "addr": "0x10", "max_targets": 7,
                               "used": [0, 1], "free": 5}]
    assert report["hotplug"] == {"pci_hotplug_slots": 32, "free_pci": 11 + 31}


def test_the_same_address_twice_is_refused():
    d = disks(2)
    place({}, d)
    d[1]["hvinfo"]["addr"] = d[0]["hvinfo"]["addr"]
    with pytest.raises(KvmError, match="already taken"):
        allocator.BusState.build(hvparams.normalize({}), [], d)


def test_the_same_id_twice_is_refused():
    d = disks(1)
    place({}, d)
    twin = {**d[0], "uuid": uuid(99), "hvinfo": {**d[0]["hvinfo"], "addr": "0x11"}}
    with pytest.raises(KvmError, match="device id disk-00000001 is used twice"):
        allocator.BusState.build(hvparams.normalize({}), [], [d[0], twin])


def test_functions_of_one_slot():
    hv = hvparams.normalize({"machine_type": "q35"})
    port = {"kind": "pcie-root-port", "hvinfo": {"driver": "pcie-root-port", "id": "pci.1", "bus": "pcie.0", "addr": "0x10.0",
                                                 "multifunction": True, "chassis": 1, "port": 1}}
    second = {"kind": "pcie-root-port", "hvinfo": {**port["hvinfo"], "id": "pci.2", "addr": "0x10.1", "chassis": 2, "port": 2}}
    state = allocator.BusState.build(hv, [port, second])
    assert state.slot_used("pcie.0", 0x10) and not state.slot_used("pcie.0", 0x11)
    # function 0 of a slot whose other functions are taken is refused (it would hide them)
    late = {"kind": "pcie-root-port", "hvinfo": {**port["hvinfo"], "id": "pci.3", "addr": "0x11.1"}}
    first = {"kind": "pcie-root-port", "hvinfo": {**port["hvinfo"], "id": "pci.4", "addr": "0x11.0"}}
    with pytest.raises(KvmError, match=r"slot 0x11 of pcie\.0 is already taken"):
        allocator.BusState.build(hv, [late, first])
    with pytest.raises(KvmError, match="already taken"):
        allocator.BusState.build(hv, [port, {**second, "hvinfo": {**second["hvinfo"], "addr": "0x10"}}])


def test_a_controller_qemu_places_takes_no_address():
    hv = hvparams.normalize({"disk_type": "scsi-hd", "pci_hotplug_slots": 0})
    legacy = {"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"}}
    assert allocator.BusState.address(legacy["hvinfo"]) is None
    d = disks(2)
    ctl, state = place({"disk_type": "scsi-hd", "pci_hotplug_slots": 0}, d, controllers=[legacy])
    assert ctl == [legacy] and [x["hvinfo"]["bus"] for x in d] == ["scsi.0", "scsi.0"]
    assert not any(state.slot_used("pci.0", s) for s in range(32))
    assert allocator.describe(state)["scsi"][0]["addr"] is None
    assert state.hvparams == hv


def test_ide_units_in_order_then_full():
    d = disks(4, type="ide")
    place({"pci_hotplug_slots": 0}, d)
    assert [(x["hvinfo"]["bus"], x["hvinfo"]["unit"]) for x in d] == [("ide.0", 0), ("ide.0", 1), ("ide.1", 0), ("ide.1", 1)]
    del d[2]
    state = allocator.BusState.build(hvparams.normalize({}), [], d)
    info, added = allocator.place_disk(state, disks(1, start=40, type="ide")[0])
    assert (info["bus"], info["unit"], added) == ("ide.1", 0, [])
    with pytest.raises(KvmError, match="IDE buses full"):
        allocator.place_disk(state, disks(1, start=41, type="ide")[0])


def test_scsi_targets_fill_the_first_controller_with_room_lowest_first():
    d = disks(10, type="scsi-hd")
    ctl, _unused = place({"pci_hotplug_slots": 0}, d)
    assert [c["hvinfo"]["id"] for c in ctl] == ["scsi", "scsi1"]
    del d[8]  # scsi1.0 target 1
    del d[3]  # scsi.0 target 3
    state = allocator.BusState.build(hvparams.normalize({"pci_hotplug_slots": 0}), ctl, d)
    assert state.free_scsi_target() == ("scsi.0", 3)
    first, _unused = allocator.place_disk(state, disks(1, start=60, type="scsi-cd")[0])
    second, _unused = allocator.place_disk(state, disks(1, start=61, type="scsi-hd")[0])
    third, _unused = allocator.place_disk(state, disks(1, start=62, type="scsi-hd")[0])
    assert [(i["bus"], i["scsi-id"], i["driver"]) for i in (first, second, third)] == [
        ("scsi.0", 3, "scsi-cd"), ("scsi1.0", 1, "scsi-hd"), ("scsi1.0", 3, "scsi-hd")]


def test_a_new_scsi_controller_is_of_the_instance_type_on_the_lowest_free_leaf():
    hv_in = {"disk_type": "scsi-hd", "scsi_controller_type": "megasas", "pci_hotplug_slots": 2}
    d = disks(64)
    ctl, _unused = place(hv_in, d)
    assert [c["hvinfo"]["driver"] for c in ctl] == ["megasas"]
    assert d[63]["hvinfo"]["scsi-id"] == 63
    state = allocator.BusState.build(hvparams.normalize(hv_in), ctl, d)
    info, added = allocator.place_disk(state, disks(1, start=70)[0])
    assert added == [{"kind": "scsi", "hvinfo": {"driver": "megasas", "id": "scsi1", "bus": "pci.0", "addr": "0x11"}}]
    assert (info["bus"], info["scsi-id"]) == ("scsi1.0", 0)
    assert state.controllers[-1] is added[0]


def test_q35_describe_reports_ports():
    d, n = disks(1), nics(1)
    _ctl, state = place({"machine_type": "q35", "pci_hotplug_slots": 2}, d, n)
    report = allocator.describe(state)
    assert report["machine"] == "q35" and report["pci"]["bus"] == "pcie.0"
    assert report["pci"]["window"] == ["0x10", "0x1e"] and report["pci"]["used"] == ["0x10"]
    assert report["ports"] == {"capacity": 4, "used": ["pci.1", "pci.2"], "free": 2}
    assert report["bridges"] == [] and report["hotplug"]["free_pci"] == 2


def test_a_restart_keeps_its_layout_when_the_hotplug_room_cannot_be_made_again():
    hv = {"kvm_pci_reservations": 30, "pci_hotplug_slots": 0}
    d = disks(2)
    place(hv, d)
    assert [x["hvinfo"]["addr"] for x in d] == ["0x1e", "0x1f"]
    again = [dict(x) for x in d]
    ctl, state = place({**hv, "pci_hotplug_slots": 5}, again)
    assert ctl == [] and state.shortfall == 5 and [x["hvinfo"] for x in again] == [x["hvinfo"] for x in d]
    # with nothing recorded a request the window cannot hold is refused (q35: one slot, eight ports)
    with pytest.raises(KvmError, match=r"cannot make room for 10 PCI devices \(8 free\)"):
        place({"machine_type": "q35", "kvm_pci_reservations": 30, "pci_hotplug_slots": 8}, disks(2))
    ctl, state = place({"machine_type": "q35", "kvm_pci_reservations": 30, "pci_hotplug_slots": 6}, disks(2))
    assert len(ctl) == 8 and state.shortfall == 0
    # and a device that cannot be placed at all is refused even with a recorded layout
    with pytest.raises(KvmError, match=r"cannot make room for 1 PCI devices \(0 free\)"):
        place(hv, [*again, *disks(1, start=30)])


def test_helpers():
    assert [allocator.controller_id(i) for i in range(3)] == ["scsi", "scsi1", "scsi2"]
    assert allocator.scsi_bus_of("scsi2") == "scsi2.0"
    assert [allocator.scsi_limit(d) for d in ("lsi53c895a", "megasas", "virtio-scsi-pci")] == [6, 63, 255]
    hv = hvparams.normalize({"disk_type": "scsi-cd"})
    assert allocator.disk_type({}, hv) == "scsi-cd" and allocator.disk_type({"type": "ide"}, hv) == "ide"
    assert allocator.disk_type({"type": None}, hv) == "scsi-cd"


# -- properties -------------------------------------------------------------------------

TYPES = ["paravirtual", "scsi-hd", "scsi-cd"]
HV = st.fixed_dictionaries({
    "machine_type": st.sampled_from(["pc", "q35"]),
    "disk_type": st.sampled_from(TYPES),
    "scsi_controller_type": st.sampled_from(["lsi", "megasas", "virtio-scsi-pci"]),
    "kvm_pci_reservations": st.integers(min_value=16, max_value=30),
    "pci_hotplug_slots": st.integers(min_value=0, max_value=40),
})
COLD = st.tuples(st.lists(st.sampled_from([None, *TYPES]), max_size=25), st.integers(min_value=0, max_value=6))
# (True, kind) plugs a disk of that type or a NIC; (False, index) unplugs the index-th device.
OPS = st.lists(st.one_of(st.tuples(st.just(True), st.sampled_from([*TYPES, "nic"])),
                         st.tuples(st.just(False), st.integers(min_value=0, max_value=60))), max_size=60)
# Targets per controller, from the controllers' data sheets (lsi: 7 targets, megasas: 64, virtio-scsi: 256).
TARGETS = {"lsi53c895a": 7, "megasas": 64, "virtio-scsi-pci": 256}
CONTROLLER_DRIVER = {"lsi": "lsi53c895a", "megasas": "megasas", "virtio-scsi-pci": "virtio-scsi-pci"}


def start(hv: dict, cold: tuple) -> tuple[list, list, list]:
    types, nic_count = cold
    cold_disks = [{"uuid": uuid(i + 1), **({"type": t} if t else {})} for i, t in enumerate(types)]
    cold_nics = [{"uuid": uuid(0x1000 + i)} for i in range(nic_count)]
    controllers: list = []
    allocator.assign(controllers, cold_disks, cold_nics, hv)
    return controllers, cold_disks, cold_nics


def window(hv: dict) -> range:
    return range(hv["kvm_pci_reservations"], 0x1F if "q35" in hv["machine_type"] else 0x20)


def needed_at_start(hv: dict, cold: tuple) -> int:
    """PCI leaves a cold start needs: new SCSI controllers, PCI disks, NICs and the hotplug room."""
    types, nic_count = cold
    kinds = [t or hv["disk_type"] for t in types]
    scsi = sum(k != "paravirtual" for k in kinds)
    per = TARGETS[CONTROLLER_DRIVER[hv["scsi_controller_type"]]]
    return -(-scsi // per) + kinds.count("paravirtual") + nic_count + hv["pci_hotplug_slots"]


def capacity(hv: dict) -> int:
    """Most PCI leaves an empty instance can have: 8 root ports per q35 slot; on pc a bridge in every slot (31 each)."""
    return len(window(hv)) * (8 if "q35" in hv["machine_type"] else 31)


def leaves(hv: dict, controllers: list) -> list[tuple[str, int]]:
    """Every PCI leaf in allocation order, computed here from the rules (not by the allocator)."""
    if "q35" in hv["machine_type"]:
        return [(c["hvinfo"]["id"], 0) for c in controllers if c["kind"] == "pcie-root-port"]
    bridges = [c["hvinfo"] for c in controllers if c["kind"] == "pci-bridge"]
    return [("pci.0", s) for s in window(hv)] + [(b["id"], s) for b in bridges for s in range(1, 32)]


def free_leaves(hv: dict, controllers: list, devices: list) -> list[tuple[str, int]]:
    taken = {(i["bus"], int(i["addr"].split(".")[0], 16)) for i in [c["hvinfo"] for c in controllers] + [d["hvinfo"] for d in devices]
             if "addr" in i}
    return [leaf for leaf in leaves(hv, controllers) if leaf not in taken]


def free_target(controllers: list, devices: list) -> tuple[str, int] | None:
    taken = {(d["hvinfo"]["bus"], d["hvinfo"]["scsi-id"]) for d in devices if "scsi-id" in d["hvinfo"]}
    for ctl in (c["hvinfo"] for c in controllers if c["kind"] == "scsi"):
        for target in range(TARGETS[ctl["driver"]]):
            if (ctl["id"] + ".0", target) not in taken:
                return ctl["id"] + ".0", target
    return None


def address(info: dict) -> tuple:
    for key in ("addr", "scsi-id", "unit"):
        if key in info:
            return info["bus"], key, info[key]
    return info["bus"], "placed by QEMU", info["id"]


def check_consistent(hv: dict, controllers: list, devices: list) -> None:
    every = [c["hvinfo"] for c in controllers] + [d["hvinfo"] for d in devices]
    addrs = [address(i) for i in every]
    assert len(addrs) == len(set(addrs))
    assert len({i["id"] for i in every}) == len(every)
    allocator.BusState.build(hv, controllers, devices)  # no double claim
    every_leaf = set(leaves(hv, controllers))
    buses = {c["hvinfo"]["id"] + ".0" for c in controllers if c["kind"] == "scsi"}
    for dev in devices:
        info = dev["hvinfo"]
        if "addr" in info:
            assert (info["bus"], int(info["addr"], 16)) in every_leaf
        else:
            assert info["bus"] in buses
            ctl = next(c["hvinfo"] for c in controllers if c["hvinfo"]["id"] + ".0" == info["bus"])
            assert 0 <= info["scsi-id"] < TARGETS[ctl["driver"]]
    for ctl in controllers:
        if ctl["kind"] != "pcie-root-port":
            continue
        slot, function = ctl["hvinfo"]["addr"].split(".")
        assert int(slot, 16) in window(hv) and ctl["hvinfo"].get("multifunction", False) == (function == "0")


def run_ops(hv: dict, controllers: list, devices: list, ops: list) -> None:
    counter = 0
    for plug, arg in ops:
        if not plug:
            if devices:
                del devices[arg % len(devices)]
            continue
        counter += 1
        state = allocator.BusState.build(hv, controllers, devices)
        free_pci = free_leaves(hv, controllers, devices)
        target = free_target(controllers, devices)
        record = {"uuid": uuid(0x5000 + counter)}
        try:
            if arg == "nic":
                info, added = allocator.place_nic(state, record), []
            else:
                info, added = allocator.place_disk(state, {**record, "type": arg})
        except KvmError:
            # refused: there really was no room
            assert not free_pci and (arg not in ("scsi-hd", "scsi-cd") or target is None)
            continue
        if "addr" in info:
            assert not added and (info["bus"], int(info["addr"], 16)) == free_pci[0]  # the lowest free PCI leaf
        elif not added:
            assert (info["bus"], info["scsi-id"]) == target  # the lowest free target of the first controller with room
        else:
            # all controllers full: a new one of the instance's type on the lowest free leaf, the disk at its target 0
            assert target is None and [a["hvinfo"]["driver"] for a in added] == [CONTROLLER_DRIVER[hv["scsi_controller_type"]]]
            assert (added[0]["hvinfo"]["bus"], int(added[0]["hvinfo"]["addr"], 16)) == free_pci[0]
            assert (info["bus"], info["scsi-id"]) == (added[0]["hvinfo"]["id"] + ".0", 0)
        controllers.extend(added)
        devices.append({**record, **({} if arg == "nic" else {"type": arg}), "hvinfo": info})


@settings(max_examples=150, deadline=None)
@given(HV, COLD, OPS)
def test_no_address_twice_and_every_address_on_a_real_bus(hv_in, cold, ops):
    hv = hvparams.normalize(hv_in)
    refused = needed_at_start(hv, cold) > capacity(hv)
    try:
        controllers, cold_disks, cold_nics = start(hv, cold)
    except KvmError as err:
        assert refused and "cannot make room" in str(err)
        return
    assert not refused
    devices = cold_disks + cold_nics
    check_consistent(hv, controllers, devices)
    run_ops(hv, controllers, devices, ops)
    check_consistent(hv, controllers, devices)


@settings(max_examples=100, deadline=None)
@given(HV, COLD, OPS)
def test_a_restart_from_the_file_keeps_every_address(hv_in, cold, ops):
    """A start from a recorded runtime (read back from JSON) moves nothing; it only adds bridges or ports for the hotplug room."""
    hv = hvparams.normalize(hv_in)
    if needed_at_start(hv, cold) > capacity(hv):
        return  # refused at start: covered by the test above
    controllers, cold_disks, cold_nics = start(hv, cold)
    devices = cold_disks + cold_nics
    run_ops(hv, controllers, devices, ops)
    # disks carry their type (assign and run_ops record it), NICs none
    recorded = json.loads(json.dumps({"controllers": controllers, "disks": [d for d in devices if "type" in d],
                                      "nics": [d for d in devices if "type" not in d]}))
    before = json.loads(json.dumps(recorded))
    state = allocator.assign(recorded["controllers"], recorded["disks"], recorded["nics"], hv)
    assert [d["hvinfo"] for d in recorded["disks"] + recorded["nics"]] == [d["hvinfo"] for d in before["disks"] + before["nics"]]
    kept, grown = recorded["controllers"][:len(before["controllers"])], recorded["controllers"][len(before["controllers"]):]
    assert kept == before["controllers"]
    assert {c["kind"] for c in grown} <= {"pcie-root-port" if "q35" in hv["machine_type"] else "pci-bridge"}
    free = len(free_leaves(hv, recorded["controllers"], recorded["disks"] + recorded["nics"]))
    assert state.shortfall == max(0, hv["pci_hotplug_slots"] - free)
    if state.shortfall:  # short only when no bridge or port fits any more
        if "q35" in hv["machine_type"]:
            assert sum(c["kind"] == "pcie-root-port" for c in recorded["controllers"]) == 8 * len(window(hv))
        else:
            assert all(state.slot_used("pci.0", s) for s in window(hv))
    check_consistent(hv, recorded["controllers"], recorded["disks"] + recorded["nics"])


@settings(max_examples=150, deadline=None)
@given(HV, COLD)
def test_cold_order_and_capacity(hv_in, cold):
    hv = hvparams.normalize(hv_in)
    if needed_at_start(hv, cold) > capacity(hv):
        with pytest.raises(KvmError, match="cannot make room"):
            start(hv, cold)
        return
    controllers, cold_disks, cold_nics = start(hv, cold)
    buses = [c for c in controllers if c["kind"] != "scsi"]
    available = free_leaves(hv, buses, [])  # every leaf the bridges or ports left free, in allocation order
    placed = [c["hvinfo"] for c in controllers if c["kind"] == "scsi"] + [d["hvinfo"] for d in cold_disks if "addr" in d["hvinfo"]]
    placed += [n["hvinfo"] for n in cold_nics]
    # SCSI controllers first, then PCI disks in index order, then NICs: exactly the first free leaves
    assert [(i["bus"], int(i["addr"].split(".")[0], 16)) for i in placed] == available[:len(placed)]
    assert len(free_leaves(hv, controllers, cold_disks + cold_nics)) >= hv["pci_hotplug_slots"]  # the promised hotplug room
    targets = [(d["hvinfo"]["bus"], d["hvinfo"]["scsi-id"]) for d in cold_disks if "scsi-id" in d["hvinfo"]]
    expected = [(c["hvinfo"]["id"] + ".0", t) for c in controllers if c["kind"] == "scsi" for t in range(TARGETS[c["hvinfo"]["driver"]])]
    assert targets == expected[:len(targets)]  # SCSI disks in index order, controller after controller, lowest target first
    assert len(expected) - len(targets) < TARGETS[CONTROLLER_DRIVER[hv["scsi_controller_type"]]]  # no controller more than needed
