"""Decoding QMP answers: qdev paths, PCI slots, peripherals, fdsets."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import query


def test_block_entries_by_device_match_exactly():
    blocks = [{"device": "", "qdev": "/machine/peripheral/disk-abc/virtio-backend"}, {"device": "", "qdev": "disk-ab"},
              {"device": "", "qdev": "/machine/unattached/device[3]"}, {"device": "ide0-cd0", "qdev": ""}]
    found = query.blocks_by_device(blocks)
    assert found == {"disk-abc": blocks[0], "disk-ab": blocks[1]}


def test_pci_slots_peripherals_and_fdsets():
    pci = [{"bus": 0, "devices": [{"slot": 16, "function": 0, "qdev_id": "d"}, {"slot": 1, "function": 1, "qdev_id": ""}]}]
    assert query.pci_devices(pci) == {16: {"slot": 16, "function": 0, "qdev_id": "d"}}
    listed = [{"name": "disk-1", "type": "child<virtio-blk-pci>"}, {"name": "type", "type": "string"}]
    assert query.peripherals(listed) == {"disk-1": "virtio-blk-pci"}
    sets = [{"fdset-id": 2, "fds": [{"fd": 9, "opaque": "disk-1"}]}, {"fdset-id": 1, "fds": [{"fd": 8, "opaque": "serial"}]},
            {"fdset-id": 5, "fds": [{"fd": 12, "opaque": "disk-1"}]}]
    assert query.fdsets_by_opaque(sets) == {"disk-1": [2, 5], "serial": [1]}
    assert query.fdset_fds(sets) == {2: [9], 1: [8], 5: [12]}


def test_qdev_ids():
    assert [query.qdev_id(q) for q in ("/machine/peripheral/disk-1/virtio-backend", "/machine/peripheral/disk-2", "disk-3", "",
                                       None, "/machine/peripheral/", "/machine/unattached/device[0]")] == [
        "disk-1", "disk-2", "disk-3", None, None, None, None]


def test_bus_names():
    assert [query.bus_name(p) for p in ("/machine/peripheral/pci.1/pci.1", "/machine/i440fx/pci.0", "/machine/q35/pcie.0/",
                                        "/machine/peripheral/scsi1/scsi1.0", "", None, 5)] == [
        "pci.1", "pci.0", "pcie.0", "scsi1.0", None, None, None]


def test_pci_devices_of_other_buses_and_functions_are_left_out():
    pci = [{"bus": 0, "devices": [{"slot": 16, "qdev_id": "no-function-given"}, {"slot": 17, "function": 2, "qdev_id": "f2"}]},
           {"bus": 1, "devices": [{"slot": 3, "function": 0, "qdev_id": "behind-bridge"}]}]
    assert query.pci_devices(pci) == {16: {"slot": 16, "qdev_id": "no-function-given"}}
    assert query.pci_devices(pci, bus=1) == {3: {"slot": 3, "function": 0, "qdev_id": "behind-bridge"}}
    assert query.pci_devices([]) == {}


def test_fdsets_without_opaque_and_repeated_sets():
    sets = [{"fdset-id": 4, "fds": [{"fd": 10}, {"fd": 11, "opaque": "disk-1"}, {"fd": 12, "opaque": "disk-1"}]},
            {"fdset-id": 3, "fds": [{"fd": 13, "opaque": "disk-1"}]}, {"fdset-id": 5}]
    assert query.fdsets_by_opaque(sets) == {"disk-1": [3, 4]}
    assert query.fdset_fds(sets) == {4: [10, 11, 12], 3: [13], 5: []}
    assert query.peripherals([{"name": "x", "type": "child<>"}, {"name": "y", "type": "link<scsi-hd>"}]) == {"x": ""}
