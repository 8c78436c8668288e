"""Allocator properties over random plug/unplug sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

HV = st.fixed_dictionaries({
    "disk_type": st.sampled_from(["paravirtual", "scsi-hd", "scsi-cd"]),
    "scsi_controller_type": st.sampled_from(["lsi", "megasas", "virtio-scsi-pci"]),
    "kvm_pci_reservations": st.integers(min_value=16, max_value=32),
})
# (True, kind) plugs a disk or NIC; (False, index) unplugs the index-th device.
OPS = st.lists(st.one_of(st.tuples(st.just(True), st.sampled_from(["disk", "nic"])),
                         st.tuples(st.just(False), st.integers(min_value=0, max_value=40))), max_size=60)


def addr_of(info: dict) -> tuple:
    return (info["bus"], int(info["addr"], 16) if "addr" in info else info["scsi-id"])


def run_ops(hv: dict, ops: list) -> list[dict]:
    devs: list[dict] = []
    counter = 0
    for plug, arg in ops:
        if plug:
            counter += 1
            state = allocator.BusState.from_devices(devs)
            uuid = f"{counter:08x}-0000-4000-8000-{counter:012x}"
            place = allocator.place_disk if arg == "disk" else allocator.place_nic
            try:
                info = place(state, hv, uuid)
            except KvmError:
                continue
            free_before = (allocator.pci_window(hv) if "addr" in info else allocator.scsi_window(hv))
            taken = {addr_of(d["hvinfo"])[1] for d in devs if d["hvinfo"]["bus"] == info["bus"]}
            chosen = int(info["addr"], 16) if "addr" in info else info["scsi-id"]
            # lowest free address first
            assert chosen == min(a for a in free_before if a not in taken)
            devs.append({"hvinfo": info})
        elif devs:
            del devs[arg % len(devs)]
    return devs


@settings(max_examples=200, deadline=None)
@given(HV, OPS)
def test_no_address_twice_and_inside_windows(hv_in, ops):
    hv = hvparams.normalize(hv_in)
    devs = run_ops(hv, ops)
    addrs = [addr_of(d["hvinfo"]) for d in devs]
    assert len(addrs) == len(set(addrs))
    ids = [d["hvinfo"]["id"] for d in devs]
    assert len(ids) == len(set(ids))
    for dev in devs:
        info = dev["hvinfo"]
        if "addr" in info:
            assert hv["kvm_pci_reservations"] <= int(info["addr"], 16) <= 0x1F
        else:
            assert 0 <= info["scsi-id"] <= hvparams.scsi_controller(hv)[1]
    allocator.BusState.from_devices(devs)  # consistent: no duplicate claims


@settings(max_examples=100, deadline=None)
@given(HV, OPS)
def test_allocation_is_deterministic(hv_in, ops):
    hv = hvparams.normalize(hv_in)
    assert run_ops(hv, ops) == run_ops(hv, ops)
