"""Bus allocator: concrete vectors for every placement rule, on pc and q35."""

from __future__ import annotations

import pytest

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
    assert ctl == [{"kind": "pci-bridge", "hvinfo": {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f",
                                                      "chassis_nr": 1, "shpc": False, "mem-reserve": 2 << 20,
                                                      "pref64-reserve": 2 << 20}}]
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
    ctl, _ = place({"disk_type": "scsi-hd", "pci_hotplug_slots": 3}, d)
    state = allocator.BusState.build(hvparams.normalize({"disk_type": "scsi-hd", "pci_hotplug_slots": 3}), ctl, d)
    info, added = allocator.place_disk(state, disks(1, start=50)[0])
    assert [c["hvinfo"]["id"] for c in added] == ["scsi1"] and info["bus"] == "scsi1.0" and info["scsi-id"] == 0
    assert added[0]["hvinfo"]["addr"] == "0x11"
    nic = allocator.place_nic(state, nics(1)[0])
    assert nic["addr"] == "0x12"


def test_exhausted_hotplug_capacity_names_the_hvparam():
    d = disks(1)
    ctl, _ = place({"pci_hotplug_slots": 0, "kvm_pci_reservations": 31}, d)
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
