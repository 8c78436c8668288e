"""hvinfo: ids, escaping, typed device arguments and the strict check of stored hvinfo."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo


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
    taken: list[str] = []
    # "disk-" leaves 27 characters: ids of 8 to 27 uuid digits, then an error
    for length in range(8, 28):
        taken.append(hvinfo.make_id("disk", uuid, taken))
        assert taken[-1] == "disk-" + uuid.replace("-", "")[:length]
    with pytest.raises(KvmError, match="cannot make a unique disk id"):
        hvinfo.make_id("disk", uuid, taken)
    assert max(len(i) for i in taken) == 32
    # a shorter kind has room for one more digit
    nic_ids: list[str] = []
    for _length in range(8, 29):
        nic_ids.append(hvinfo.make_id("nic", uuid, nic_ids))
    assert nic_ids[-1] == "nic-" + uuid.replace("-", "")[:28]
    with pytest.raises(KvmError, match="cannot make a unique nic id"):
        hvinfo.make_id("nic", uuid, nic_ids)


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


def test_check_uuid_lowercases_and_names_what_it_checked():
    assert hvinfo.check_uuid("7C079136-AAAA-4BBB-8CCC-123456789ABC") == "7c079136-aaaa-4bbb-8ccc-123456789abc"
    for bad in ("7c079136aaaa4bbb8ccc123456789abc", "7c079136-aaaa-4bbb-8ccc-123456789ab", "g" * 8 + "-aaaa-4bbb-8ccc-123456789abc", None, 5):
        with pytest.raises(KvmError, match=r"^nic uuid .* is not a UUID"):
            hvinfo.check_uuid(bad, "nic uuid")


def test_options_escape_every_value_and_skip_none():
    assert hvinfo.options("pc", {"accel": "kvm", "x": None, "on": True}) == "pc,accel=kvm,on=on"
    assert hvinfo.options("a,b", {"k": "v,w"}) == "a,,b,k=v,,w"
    assert hvinfo.options(None, {"k": False}) == "k=off"
    with pytest.raises(KvmError, match="control character"):
        hvinfo.options("pc", {"k": "a\x1bb"})


def test_device_args_follow_key_order_whatever_the_input_order():
    info = {"addr": "0x10.1", "multifunction": True, "bus": "pci.0", "id": "nic-1", "driver": "e1000"}
    args = hvinfo.device_args(info, netdev="nic-1", mac=None)  # type: ignore[arg-type]
    assert list(args) == ["driver", "id", "bus", "addr", "multifunction", "netdev"]
    assert "mac" not in args


def test_constructors_and_addresses():
    assert hvinfo.pci_hvinfo("e1000", "nic-1", "pci.1", 0x1F) == {"driver": "e1000", "id": "nic-1", "bus": "pci.1", "addr": "0x1f"}
    assert hvinfo.pci_hvinfo("pcie-root-port", "pci.9", "pcie.0", 0x10, 3)["addr"] == "0x10.3"
    assert hvinfo.ide_hvinfo("ide-hd", "disk-1", "ide.1", 1) == {"driver": "ide-hd", "id": "disk-1", "bus": "ide.1", "unit": 1}
    with pytest.raises(KvmError, match="invalid device id"):
        hvinfo.scsi_hvinfo("scsi-hd", "1bad", "scsi.0", 0)
    assert hvinfo.pci_addr({"addr": "0x10.3"}) == (16, 3)
    assert hvinfo.pci_addr({"addr": "0x1f"}) == (31, 0)
    assert hvinfo.pci_addr({"addr": "0x2.0x7"}) == (2, 7)
    assert hvinfo.pci_addr({"id": "scsi", "bus": "pci.0"}) is None
    assert hvinfo.pci_slot({"addr": "0x1e.4"}) == 30 and hvinfo.pci_slot({"scsi-id": 1}) is None
    with pytest.raises(KvmError, match="device d: bad PCI addr '16'"):
        hvinfo.pci_addr({"id": "d", "addr": "16"})


def test_where_and_kinds():
    assert hvinfo.where({"bus": "pci.1", "addr": "0x3"}) == "pci.1 slot 0x3"
    assert hvinfo.where({"bus": "scsi1.0", "scsi-id": 0}) == "scsi1.0 scsi-id 0"
    assert hvinfo.where({"bus": "ide.1", "unit": 0}) == "ide.1 unit 0"
    assert hvinfo.where({"bus": "pci.0"}) == "pci.0 (placed by QEMU)"
    assert hvinfo.is_pci({"addr": "0x3"}) and not hvinfo.is_pci({"scsi-id": 0})
    assert hvinfo.is_scsi({"scsi-id": 0}) and not hvinfo.is_scsi({"unit": 0})
    kinds = {d: hvinfo.driver_kind(d) for d in ("scsi-cd", "scsi-generic", "ide-cd", "ide-hd", "megasas", "virtio-scsi-pci",
                                                "pci-bridge", "pcie-root-port", "virtio-blk-pci", "rtl8139", "nvme", "")}
    assert kinds == {"scsi-cd": "scsi", "scsi-generic": "scsi", "ide-cd": "ide", "ide-hd": "ide", "megasas": "controller",
                     "virtio-scsi-pci": "controller", "pci-bridge": "pci-bridge", "pcie-root-port": "pcie-root-port",
                     "virtio-blk-pci": "pci", "rtl8139": "pci", "nvme": None, "": None}


BRIDGE = {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f", "chassis_nr": 1, "shpc": False,
          "mem-reserve": 2 << 20, "pref64-reserve": 2 << 20}
PORT = {"driver": "pcie-root-port", "id": "pci.1", "bus": "pcie.0", "addr": "0x10.0", "multifunction": True, "chassis": 1, "port": 1}
IDE = {"driver": "ide-hd", "id": "disk-3", "bus": "ide.1", "unit": 1}
CTL = {"driver": "megasas", "id": "scsi1", "bus": "pci.0", "addr": "0x11"}


@pytest.mark.parametrize("good", [BRIDGE, PORT, IDE, CTL, {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"},
                                  {**GOOD_PCI, "bus": "pci.12", "multifunction": False}, {**GOOD_SCSI, "bus": "scsi3.0", "scsi-id": 255},
                                  {**PORT, "bus": "pcie.0", "addr": "0x1e.7"}])
def test_validate_accepts_every_kind(good):
    assert hvinfo.validate(dict(good), "x") == good


@pytest.mark.parametrize("bad,message", [
    ("a string", "hvinfo must be a mapping"),
    ({"id": "d", "bus": "pci.0", "addr": "0x10"}, "driver None is not a driver"),
    ({**BRIDGE, "chassis_nr": 0}, "chassis_nr 0 must be an integer 1-255"),
    ({**BRIDGE, "chassis_nr": 256}, "chassis_nr 256"),
    ({**BRIDGE, "shpc": 0}, "shpc 0 must be true or false"),
    ({**BRIDGE, "mem-reserve": (1 << 40) + 1}, "mem-reserve"),
    ({**BRIDGE, "io-reserve": 4096}, "unknown key(s) 'io-reserve'"),
    ({k: v for k, v in BRIDGE.items() if k != "chassis_nr"}, "lacks chassis_nr"),
    ({**PORT, "chassis": 0}, "chassis 0"),
    ({**PORT, "port": 256}, "port 256"),
    ({**PORT, "multifunction": "on"}, "multifunction 'on' must be true or false"),
    ({**PORT, "io-reserve": 65536}, "io-reserve 65536"),
    ({**PORT, "shpc": False}, "unknown key(s) 'shpc'"),
    ({k: v for k, v in PORT.items() if k not in ("chassis", "port")}, "lacks chassis, port"),
    ({**IDE, "unit": 2}, "unit 2 must be 0 or 1"),
    ({**IDE, "bus": "ide.6"}, "not a ide bus name"),
    ({**IDE, "bus": "ide.0", "addr": "0x1"}, "unknown key(s) 'addr'"),
    ({**CTL, "bus": "scsi.0"}, "not a controller bus name"),
    ({**CTL, "scsi-id": 1}, "unknown key(s) 'scsi-id'"),
    ({**GOOD_SCSI, "bus": "scsi.1"}, "not a scsi bus name"),
    ({**GOOD_PCI, "bus": "pci.1000"}, "not a pci bus name"),
    ({**GOOD_PCI, "id": 5}, "invalid device id 5"),
])
def test_validate_refuses(bad, message):
    with pytest.raises(KvmError) as err:
        hvinfo.validate(bad, "where")
    assert message in str(err.value) and str(err.value).startswith("where: ")


# An oracle for the integer keys, written from QEMU's limits, not from the module's table.
INT_RANGES = {"scsi-id": (0, 255), "lun": (0, 255), "channel": (0, 0), "unit": (0, 1), "chassis_nr": (1, 255), "chassis": (1, 255),
              "port": (0, 255), "io-reserve": (0, 65535), "mem-reserve": (0, 1 << 40), "pref64-reserve": (0, 1 << 40)}
BASE_OF = {"scsi-id": GOOD_SCSI, "lun": GOOD_SCSI, "channel": GOOD_SCSI, "unit": IDE, "chassis_nr": BRIDGE, "chassis": PORT,
           "port": PORT, "io-reserve": PORT, "mem-reserve": BRIDGE, "pref64-reserve": BRIDGE}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(INT_RANGES)),
       st.one_of(st.integers(min_value=-3, max_value=300), st.integers(min_value=60000, max_value=70000),
                 st.integers(min_value=(1 << 40) - 2, max_value=(1 << 40) + 2), st.booleans()))
def test_integer_keys_accept_exactly_their_range(key, value):
    low, high = INT_RANGES[key]
    expected = not isinstance(value, bool) and low <= value <= high
    try:
        hvinfo.validate({**BASE_OF[key], key: value}, "x")
        accepted = True
    except KvmError as err:
        assert f"hvinfo {key} {value!r} must be" in str(err)
        accepted = False
    assert accepted == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=0x40), st.one_of(st.none(), st.integers(min_value=0, max_value=9)), st.booleans())
def test_addresses_accept_exactly_slots_0_to_1f_and_functions_0_to_7(slot, function, upper):
    text = hex(slot) if function is None else f"{hex(slot)}.{function}"
    text = text.upper().replace("0X", "0x") if upper else text
    expected = slot <= 0x1F and (function is None or function <= 7)
    try:
        hvinfo.validate({**GOOD_PCI, "addr": text}, "x")
        accepted = True
    except KvmError:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize("key,value", [("id", "disk-1\n"), ("bus", "pci.0\n"), ("addr", "0x10\n")])
def test_validate_refuses_a_trailing_newline(key, value):
    with pytest.raises(KvmError):
        hvinfo.validate({**GOOD_PCI, key: value}, "x")
