"""hvinfo rendering, escaping and device ids."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as cmdline
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError


def split_options(text: str) -> list[str]:
    """QEMU's own split: single commas separate, doubled commas are literal."""
    return [part.replace("\0", ",") for part in text.replace(",,", "\0").split(",")]


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


def test_injected_property_stays_inside_the_value():
    disk = devices.disk_record({"path": "/img/x,drive=evil,file.filename=/etc/shadow", "uuid": "11111111-2222-4333-8444-555555555555"}, "i")
    disk["hvinfo"] = hvinfo.pci_hvinfo("virtio-blk-pci", "disk-11111111", "pci.0", 0x10)
    text = cmdline.hvi.options(None, cmdline.flatten(devices.blockdev_args(disk)))
    parts = split_options(text)
    assert [p.split("=", 1)[0] for p in parts] == ["driver", "node-name", "read-only", "file.driver", "file.filename", "file.read-only"]
    assert dict(p.split("=", 1) for p in parts)["file.filename"] == "/img/x,drive=evil,file.filename=/etc/shadow"


def test_device_option_and_typed_device_add():
    info = hvinfo.scsi_hvinfo("scsi-hd", "disk-abc", "scsi.0", 3)
    assert hvinfo.device_option(info, drive="disk-abc") == "scsi-hd,id=disk-abc,bus=scsi.0,channel=0,scsi-id=3,lun=0,drive=disk-abc"
    args = hvinfo.device_add_args(info, drive="disk-abc")
    assert args == {"driver": "scsi-hd", "id": "disk-abc", "bus": "scsi.0", "channel": 0, "scsi-id": 3, "lun": 0, "drive": "disk-abc"}
    assert all(isinstance(args[k], int) for k in ("channel", "scsi-id", "lun"))
    pci = hvinfo.device_add_args(hvinfo.pci_hvinfo("virtio-net-pci", "nic-1", "pci.0", 0x1F), mac="52:54:00:00:00:01", netdev=None)
    assert pci == {"driver": "virtio-net-pci", "id": "nic-1", "bus": "pci.0", "addr": "0x1f", "mac": "52:54:00:00:00:01"}


def test_validate_refuses_incomplete_or_mistyped():
    with pytest.raises(KvmError, match=r"lacks"):
        hvinfo.validate({"driver": "x", "id": "a"}, "here")
    with pytest.raises(KvmError, match="scsi-id must be an integer"):
        hvinfo.validate({"driver": "scsi-hd", "id": "a", "bus": "scsi.0", "channel": 0, "scsi-id": "1", "lun": 0}, "here")
    with pytest.raises(KvmError, match="bad PCI addr"):
        hvinfo.validate({"driver": "e1000", "id": "a", "bus": "pci.0", "addr": "zz"}, "here")
