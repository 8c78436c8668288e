"""Bus allocator: concrete vectors for every placement rule."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

INST = "00000000-0000-4000-8000-000000000000"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def disks(n: int) -> list[dict]:
    return [devices.disk_record({"path": f"/d{i}.img", "uuid": uuid(i + 1)}, INST) for i in range(n)]


def nics(n: int) -> list[dict]:
    return [devices.nic_record({"uuid": uuid(0x100 + i)}, INST) for i in range(n)]


def test_disks_first_then_nics_from_0x10():
    hv = hvparams.normalize({})
    d, n = disks(3), nics(2)
    allocator.assign(d, n, hv)
    assert [x["hvinfo"]["addr"] for x in d] == ["0x10", "0x11", "0x12"]
    assert [x["hvinfo"]["addr"] for x in n] == ["0x13", "0x14"]
    assert d[0]["hvinfo"] == {"driver": "virtio-blk-pci", "id": "disk-00000001", "bus": "pci.0", "addr": "0x10"}
    assert n[1]["hvinfo"] == {"driver": "virtio-net-pci", "id": "nic-00000101", "bus": "pci.0", "addr": "0x14"}


def test_scsi_disks_take_no_pci_slot():
    hv = hvparams.normalize({"disk_type": "scsi-hd"})
    d, n = disks(3), nics(1)
    allocator.assign(d, n, hv)
    assert [x["hvinfo"] for x in d] == [
        {"driver": "scsi-hd", "id": f"disk-0000000{i + 1}", "bus": "scsi.0", "channel": 0, "scsi-id": i, "lun": 0}
        for i in range(3)
    ]
    assert n[0]["hvinfo"]["addr"] == "0x10"


def test_reservations_move_the_window():
    hv = hvparams.normalize({"kvm_pci_reservations": 20})
    d = disks(1)
    allocator.assign(d, [], hv)
    assert d[0]["hvinfo"]["addr"] == "0x14"


def test_pci_window_exhaustion_names_limit_and_remedy():
    hv = hvparams.normalize({"kvm_pci_reservations": 30})
    d = disks(2)
    allocator.assign(d, [], hv)
    assert [x["hvinfo"]["addr"] for x in d] == ["0x1e", "0x1f"]
    with pytest.raises(KvmError) as err:
        allocator.assign(d + disks(3)[2:], [], hv)
    text = str(err.value)
    assert "pci.0" in text and "2 slots" in text and "kvm_pci_reservations" in text and "SCSI" in text
    assert "\n" not in text


def test_hole_is_filled_lowest_first():
    hv = hvparams.normalize({})
    d = disks(4)
    allocator.assign(d, [], hv)
    del d[1]  # frees 0x11
    state = allocator.BusState.from_devices(d)
    assert allocator.place_disk(state, hv, uuid(99))["addr"] == "0x11"
    assert allocator.place_disk(state, hv, uuid(98))["addr"] == "0x14"


@pytest.mark.parametrize("kind,driver,limit", [("lsi", "lsi53c895a", 7), ("megasas", "megasas", 64), ("virtio-scsi-pci", "virtio-scsi-pci", 256)])
def test_scsi_controller_limits(kind, driver, limit):
    hv = hvparams.normalize({"disk_type": "scsi-hd", "scsi_controller_type": kind})
    state = allocator.BusState()
    ids = [allocator.place_disk(state, hv, uuid(i + 1))["scsi-id"] for i in range(limit)]
    assert ids == list(range(limit))
    with pytest.raises(KvmError) as err:
        allocator.place_disk(state, hv, uuid(5000))
    assert f"{kind} ({driver})" in str(err.value) and f"{limit} targets" in str(err.value)
    if kind == "lsi":
        assert "megasas (64 targets)" in str(err.value) and "virtio-scsi-pci (256 targets)" in str(err.value)


def test_scsi_hole_reused():
    hv = hvparams.normalize({"disk_type": "scsi-cd"})
    d = disks(3)
    allocator.assign(d, [], hv)
    assert d[0]["hvinfo"]["driver"] == "scsi-cd"
    state = allocator.BusState.from_devices([d[0], d[2]])
    assert allocator.place_disk(state, hv, uuid(77))["scsi-id"] == 1


def test_ide_units_and_limit():
    hv = hvparams.normalize({"disk_type": "ide"})
    d = disks(4)
    allocator.assign(d, [], hv)
    assert [(x["hvinfo"]["bus"], x["hvinfo"]["unit"]) for x in d] == [("ide.0", 0), ("ide.0", 1), ("ide.1", 0), ("ide.1", 1)]
    with pytest.raises(KvmError, match="IDE buses full"):
        allocator.assign(d + disks(5)[4:], [], hv)


def test_taken_address_twice_is_refused():
    a = {"hvinfo": {"driver": "virtio-blk-pci", "id": "disk-a", "bus": "pci.0", "addr": "0x10"}}
    b = {"hvinfo": {"driver": "virtio-blk-pci", "id": "disk-b", "bus": "pci.0", "addr": "0x10"}}
    with pytest.raises(KvmError, match="already taken"):
        allocator.BusState.from_devices([a, b])


def test_describe_reports_free_and_used():
    hv = hvparams.normalize({"disk_type": "scsi-hd", "kvm_pci_reservations": 29})
    d, n = disks(2), nics(1)
    state = allocator.assign(d, n, hv)
    report = allocator.describe(state, hv)
    assert report["pci"] == {"bus": "pci.0", "window": ["0x1d", "0x1f"], "used": ["0x1d"], "free": ["0x1e", "0x1f"]}
    assert report["scsi"] == {"bus": "scsi.0", "controller": "lsi", "driver": "lsi53c895a", "max_targets": 7, "used": [0, 1], "free": 5}
