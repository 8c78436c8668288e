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
