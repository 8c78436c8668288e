"""Facts about the devices QEMU placed itself: the descriptors they need, finding one, what cannot be started."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import fixed, kinds

NIC = {"kind": "nic", "mac": "aa:00:00:11:22:33", "uuid": "u-nic", "driver": "virtio-net-pci", "netdev": "netdev0"}
DEVICE_DISK = {"kind": "disk", "path": "/srv/a.img", "format": "raw", "mode": "rw", "render": "device", "driver": "virtio-blk-pci"}
DRIVE_DISK = {"kind": "disk", "path": "/srv/b.img", "format": "raw", "mode": "rw", "render": "drive", "drive": {"if": "ide"}, "at": 3}
RO_DRIVE = {**DRIVE_DISK, "path": "/srv/c.iso", "mode": "ro"}


def test_disks_are_keyed_by_their_position_and_a_writable_drive_needs_a_read_only_descriptor_too():
    rt = {"fixed": [NIC, DEVICE_DISK, DRIVE_DISK, RO_DRIVE]}
    assert [(key, dev["path"], dev["mode"]) for key, dev in fixed.disks(rt)] == [
        ("fixed1", "/srv/a.img", "rw"), ("fixed2", "/srv/b.img", "rw"), ("fixed2:ro", "/srv/b.img", "ro"), ("fixed3", "/srv/c.iso", "ro")]
    assert DRIVE_DISK["mode"] == "rw"  # the read-only one is a copy
    assert fixed.nics(rt) == [NIC]
    assert fixed.disks({}) == [] and fixed.nics({"disks": []}) == []


def test_find_looks_in_one_kind_by_one_key():
    rt = {"fixed": [NIC, DEVICE_DISK]}
    assert fixed.find(rt, kinds.NICS, "mac", "aa:00:00:11:22:33") is NIC
    assert fixed.find(rt, kinds.DISKS, "path", "/srv/a.img") is DEVICE_DISK
    assert fixed.find(rt, kinds.DISKS, "mac", "aa:00:00:11:22:33") is None  # a NIC is not a disk
    assert fixed.find(rt, kinds.NICS, "mac", "aa:00:00:11:22:34") is None and fixed.find({}, kinds.NICS, "mac", None) is None


def test_reachable_uris_are_the_ones_qemu_can_be_handed():
    assert fixed.reachable("iscsi://127.0.0.1/iqn.2026-01.test:t/1") and fixed.reachable("nbd://127.0.0.1:10809/disk")
    assert not fixed.reachable("rbd:rbd/volume") and not fixed.reachable("gluster://192.0.2.1/gv0/x")


def test_unstartable_names_the_first_reason():
    assert fixed.unstartable({"disks": [{"path": "/srv/a.img", "uri": None}], "fixed": [NIC, DEVICE_DISK, DRIVE_DISK]}) is None
    assert fixed.unstartable({"disks": [{"path": None, "uri": "nbd://192.0.2.1/x"}]}) is None  # QEMU reaches it itself
    assert "uri 'rbd:rbd/v'" in fixed.unstartable({"disks": [{"path": None, "uri": "rbd:rbd/v"}]})
    assert "uri 'nbd://192.0.2.1/x'" in fixed.unstartable({"disks": [{"path": "/dev/x", "uri": "nbd://192.0.2.1/x"}]})
    assert "cannot hand to QEMU" in fixed.unstartable({"fixed": [{**DEVICE_DISK, "uri": "nbd://192.0.2.1/x"}]})
    assert "-drive if=scsi" in fixed.unstartable({"fixed": [{**DRIVE_DISK, "drive": {"if": "scsi"}}]})
    assert "virtio_net_queues=4" in fixed.unstartable({"legacy_hvparams": {"virtio_net_queues": 4}})
    assert fixed.unstartable({"legacy_hvparams": {"virtio_net_queues": True}}) is None
    assert fixed.unstartable({"legacy_hvparams": {"virtio_net_queues": 1}}) is None
