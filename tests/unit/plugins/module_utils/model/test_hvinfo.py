"""hvinfo: ids, escaping, typed device arguments and the strict check of stored hvinfo."""

from __future__ import annotations

import re

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError


def test_ids_use_the_first_uuid_group():
    assert hvinfo.make_id("disk", "7c079136-aaaa-4bbb-8ccc-123456789abc", []) == "disk-7c079136"
    assert hvinfo.make_id("nic", "7C079136-AAAA-4BBB-8CCC-123456789ABC", []) == "nic-7c079136"


def test_prefix_collision_lengthens_the_id():
    first = hvinfo.make_id("disk", "7c079136-aaaa-4bbb-8ccc-123456789abc", [])
    second = hvinfo.make_id("disk", "7c079136-abab-4bbb-8ccc-123456789abc", [first])
    assert second == "disk-7c079136a"
    third = hvinfo.make_id("disk", "7c079136-abcd-4bbb-8ccc-123456789abc", [first, second])
    assert third == "disk-7c079136ab"


def test_same_uuid_twice_is_an_error_not_a_duplicate_id():
    uuid = "7c079136-aaaa-4bbb-8ccc-123456789abc"
    taken = [hvinfo.make_id("disk", uuid, [])]
    for _attempt in range(30):
        try:
            taken.append(hvinfo.make_id("disk", uuid, taken))
        except KvmError as err:
            assert "unique disk id" in str(err)
            break
    assert len(taken) == len(set(taken))
    assert all(len(i) <= 32 for i in taken)


@pytest.mark.parametrize("bad", ["1disk", "", "a" * 33, "disk x", "disk,x", "disk/x", None])
def test_check_id_refuses(bad):
    with pytest.raises(KvmError, match="invalid device id"):
        hvinfo.check_id(bad)


@pytest.mark.parametrize("good", ["d", "disk-7c079136", "a" * 32, "x.y_z-1"])
def test_check_id_accepts(good):
    assert hvinfo.check_id(good) == good


def test_escape_doubles_commas_and_refuses_control_chars():
    assert hvinfo.escape("/a,b,,c") == "/a,,b,,,,c"
    assert hvinfo.escape(True) == "on" and hvinfo.escape(False) == "off"
    with pytest.raises(KvmError, match="control character"):
        hvinfo.escape("a\nb")


def test_device_args_are_typed_for_qmp_and_json():
    info = hvinfo.scsi_hvinfo("scsi-hd", "disk-abc", "scsi.0", 3)
    args = hvinfo.device_args(info, drive="disk-abc")
    assert args == {"driver": "scsi-hd", "id": "disk-abc", "bus": "scsi.0", "channel": 0, "scsi-id": 3, "lun": 0, "drive": "disk-abc"}
    assert all(isinstance(args[k], int) for k in ("channel", "scsi-id", "lun"))
    pci = hvinfo.device_args(hvinfo.pci_hvinfo("virtio-net-pci", "nic-1", "pci.0", 0x1F), mac="52:54:00:00:00:01", netdev=None)
    assert pci == {"driver": "virtio-net-pci", "id": "nic-1", "bus": "pci.0", "addr": "0x1f", "mac": "52:54:00:00:00:01"}


GOOD_PCI = {"driver": "virtio-blk-pci", "id": "disk-1", "bus": "pci.0", "addr": "0x10"}
GOOD_SCSI = {"driver": "scsi-hd", "id": "disk-2", "bus": "scsi.0", "channel": 0, "scsi-id": 6, "lun": 0}


@pytest.mark.parametrize("change,message", [
    ({"serial": "KEYINJ"}, "unknown key(s) 'serial'"),
    ({"bootindex": 1}, "unknown key(s) 'bootindex'"),
    ({"driver": "virtio-blk-pci,serial=x"}, "not a driver this collection knows"),
    ({"driver": "nvme"}, "not a driver this collection knows"),
    ({"addr": "0x20"}, "must be a PCI address"),
    ({"addr": "-0x1"}, "must be a PCI address"),
    ({"addr": "0x10,bootindex=1"}, "must be a PCI address"),
    ({"addr": 16}, "must be a PCI address"),
    ({"bus": "pci.0,addr=3"}, "not a pci bus name"),
    ({"bus": "scsi.0"}, "not a pci bus name"),
    ({"id": "1disk"}, "invalid device id"),
    ({"id": "d,x=1"}, "invalid device id"),
])
def test_validate_refuses_hostile_pci_hvinfo(change, message):
    with pytest.raises(KvmError) as err:
        hvinfo.validate({**GOOD_PCI, **change}, "runtime disk 0")
    assert message in str(err.value) and str(err.value).startswith("runtime disk 0:")


@pytest.mark.parametrize("change,message", [
    ({"scsi-id": -1}, "scsi-id -1 must be an integer 0-255"),
    ({"scsi-id": 256}, "must be an integer 0-255"),
    ({"scsi-id": "1"}, "must be an integer 0-255"),
    ({"scsi-id": True}, "must be an integer 0-255"),
    ({"lun": 300}, "lun 300"),
    ({"channel": 1}, "channel 1 must be 0"),
    ({"addr": "0x10"}, "unknown key(s) 'addr'"),
    ({"bus": "pci.0"}, "not a scsi bus name"),
])
def test_validate_refuses_hostile_scsi_hvinfo(change, message):
    with pytest.raises(KvmError, match=re.escape(message)):
        hvinfo.validate({**GOOD_SCSI, **change}, "here")


def test_validate_keeps_only_known_keys_in_order_and_checks_kind():
    assert list(hvinfo.validate(dict(reversed(list(GOOD_SCSI.items()))), "x")) == list(GOOD_SCSI)
    with pytest.raises(KvmError, match="lacks scsi-id"):
        hvinfo.validate({k: v for k, v in GOOD_SCSI.items() if k != "scsi-id"}, "x")
    with pytest.raises(KvmError, match="does not belong here"):
        hvinfo.validate(GOOD_SCSI, "nic", ("pci",))
    assert hvinfo.validate({"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"}, "ctl", ("controller",))["id"] == "scsi"
