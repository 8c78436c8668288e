"""Allocator properties over random topologies and plug/unplug sequences (hypothesis).

Exhaustion is never skipped: when the allocator refuses, the property checks
that nothing was free (so an allocator that refuses too early fails here).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, hvparams

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


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def start(hv: dict, cold: tuple) -> tuple[list, list, list]:
    types, nic_count = cold
    disks = [{"uuid": uuid(i + 1), **({"type": t} if t else {})} for i, t in enumerate(types)]
    nics = [{"uuid": uuid(0x1000 + i)} for i in range(nic_count)]
    controllers: list = []
    allocator.assign(controllers, disks, nics, hv)
    return controllers, disks, nics


def leaves(hv: dict, controllers: list) -> list[tuple[str, int]]:
    """Every PCI leaf in allocation order, computed here from the rules (not by the allocator)."""
    if "q35" in hv["machine_type"]:
        return [(c["hvinfo"]["id"], 0) for c in controllers if c["kind"] == "pcie-root-port"]
    bridges = [c["hvinfo"] for c in controllers if c["kind"] == "pci-bridge"]
    return [("pci.0", s) for s in range(hv["kvm_pci_reservations"], 0x20)] + [(b["id"], s) for b in bridges for s in range(1, 32)]


def free_leaves(hv: dict, controllers: list, devices: list) -> list[tuple[str, int]]:
    taken = {(i["bus"], int(i["addr"].split(".")[0], 16)) for i in [c["hvinfo"] for c in controllers] + [d["hvinfo"] for d in devices]
             if "addr" in i}
    return [leaf for leaf in leaves(hv, controllers) if leaf not in taken]


def free_target(controllers: list, devices: list) -> tuple[str, int] | None:
    limits = {"lsi53c895a": 7, "megasas": 64, "virtio-scsi-pci": 256}
    taken = {(d["hvinfo"]["bus"], d["hvinfo"]["scsi-id"]) for d in devices if "scsi-id" in d["hvinfo"]}
    for ctl in (c["hvinfo"] for c in controllers if c["kind"] == "scsi"):
        for target in range(limits[ctl["driver"]]):
            if (ctl["id"] + ".0", target) not in taken:
                return ctl["id"] + ".0", target
    return None


def address(info: dict) -> tuple:
    return (info["bus"], info.get("addr") or info.get("scsi-id") if "unit" not in info else info["unit"])


def check_consistent(hv: dict, controllers: list, devices: list) -> None:
    every = [c["hvinfo"] for c in controllers] + [d["hvinfo"] for d in devices]
    addrs = [address(i) for i in every if "addr" in i or "scsi-id" in i or "unit" in i]
    assert len(addrs) == len(set(addrs))
    assert len({i["id"] for i in every}) == len(every)
    allocator.BusState.build(hv, controllers, devices)  # no double claim
    every_leaf = set(leaves(hv, controllers))
    buses = {c["hvinfo"]["id"] + ".0" for c in controllers if c["kind"] == "scsi"}
    for dev in devices:
        info = dev["hvinfo"]
        if "addr" in info:
            assert (info["bus"], int(info["addr"], 16)) in every_leaf
        elif "scsi-id" in info:
            assert info["bus"] in buses
            ctl = next(c["hvinfo"] for c in controllers if c["hvinfo"]["id"] + ".0" == info["bus"])
            assert 0 <= info["scsi-id"] <= allocator.scsi_limit(ctl["driver"])


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
        if "addr" in info and not added:
            assert (info["bus"], int(info["addr"], 16)) == free_pci[0]  # the lowest free PCI leaf
        if "scsi-id" in info and not added:
            assert (info["bus"], info["scsi-id"]) == target  # the lowest free target of the first controller with room
        if added:
            assert target is None and (added[0]["hvinfo"]["bus"], int(added[0]["hvinfo"]["addr"], 16)) == free_pci[0]
        controllers.extend(added)
        devices.append({**record, "hvinfo": info})


@settings(max_examples=150, deadline=None)
@given(HV, COLD, OPS)
def test_no_address_twice_and_every_address_on_a_real_bus(hv_in, cold, ops):
    hv = hvparams.normalize(hv_in)
    try:
        controllers, disks, nics = start(hv, cold)
    except KvmError as err:
        assert "cannot make room" in str(err)  # q35 window too small for what was asked
        return
    devices = disks + nics
    check_consistent(hv, controllers, devices)
    run_ops(hv, controllers, devices, ops)
    check_consistent(hv, controllers, devices)


@settings(max_examples=100, deadline=None)
@given(HV, COLD, OPS)
def test_allocation_is_deterministic(hv_in, cold, ops):
    hv = hvparams.normalize(hv_in)
    results = []
    for _ in range(2):
        try:
            controllers, disks, nics = start(hv, cold)
        except KvmError as err:
            results.append(str(err))
            continue
        devices = disks + nics
        run_ops(hv, controllers, devices, ops)
        results.append(repr((controllers, devices)))
    assert results[0] == results[1]


@settings(max_examples=150, deadline=None)
@given(HV, COLD)
def test_cold_order_and_capacity(hv_in, cold):
    hv = hvparams.normalize(hv_in)
    try:
        controllers, disks, nics = start(hv, cold)
    except KvmError:
        return
    order = {leaf: pos for pos, leaf in enumerate(leaves(hv, controllers))}
    pci = [d for d in disks if "addr" in d["hvinfo"]] + nics
    positions = [order[(d["hvinfo"]["bus"], int(d["hvinfo"]["addr"], 16))] for d in pci]
    assert positions == sorted(positions)  # disk/0 first, disks in index order, then NICs
    scsi_ctl = [order[(c["hvinfo"]["bus"], int(c["hvinfo"]["addr"], 16))] for c in controllers if c["kind"] == "scsi"]
    assert all(p < min(positions, default=10**6) for p in scsi_ctl)  # controllers before the devices
    assert len(free_leaves(hv, controllers, disks + nics)) >= hv["pci_hotplug_slots"]  # the promised hotplug room
    targets = [(d["hvinfo"]["bus"], d["hvinfo"]["scsi-id"]) for d in disks if "scsi-id" in d["hvinfo"]]
    expected = [(c["hvinfo"]["id"] + ".0", t) for c in controllers if c["kind"] == "scsi"
                for t in range(allocator.scsi_limit(c["hvinfo"]["driver"]) + 1)][:len(targets)]
    assert targets == expected  # SCSI disks in index order, controller after controller, lowest target first
