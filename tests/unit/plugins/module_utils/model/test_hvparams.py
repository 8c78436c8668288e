"""hvparams schema and device records."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

INST = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("disk_type,driver", [
    ("paravirtual", "virtio-blk-pci"), ("scsi-hd", "scsi-hd"), ("scsi-block", "scsi-block"),
    ("scsi-generic", "scsi-generic"), ("scsi-cd", "scsi-cd"), ("ide", "ide-hd"), ("scsi", "scsi-hd"),
])
def test_disk_drivers(disk_type, driver):
    assert hvparams.disk_driver(hvparams.normalize({"disk_type": disk_type})) == driver


@pytest.mark.parametrize("nic_type", ["e1000", "rtl8139", "ne2k_pci", "pcnet", "i82551", "i82557b", "i82559er"])
def test_nic_drivers(nic_type):
    assert hvparams.nic_driver(hvparams.normalize({"nic_type": nic_type})) == nic_type
    assert hvparams.nic_driver(hvparams.normalize({})) == "virtio-net-pci"


@pytest.mark.parametrize("kind,driver,last", [("lsi", "lsi53c895a", 6), ("megasas", "megasas", 63), ("virtio-scsi-pci", "virtio-scsi-pci", 255)])
def test_controllers(kind, driver, last):
    assert hvparams.scsi_controller(hvparams.normalize({"scsi_controller_type": kind})) == (driver, last)


@pytest.mark.parametrize("params,message", [
    ({"colour": "red"}, "unknown hvparam 'colour'"),
    ({"disk_type": "nvme"}, "disk_type='nvme' is not one of"),
    ({"nic_type": "virtio"}, "nic_type='virtio' is not one of"),
    ({"scsi_controller_type": "buslogic"}, "scsi_controller_type='buslogic'"),
    ({"accel": "hvf"}, "accel='hvf'"),
    ({"machine_type": "q36"}, "machine_type='q36' is not supported"),
    ({"pci_hotplug_slots": -1}, "pci_hotplug_slots=-1 must be an integer"),
    ({"machine_type": "q35", "disk_type": "ide"}, "q35 has no IDE bus"),
    ({"kvm_pci_reservations": 2}, "must be an integer from 4 to 32"),
    ({"kvm_pci_reservations": 33}, "must be an integer from 4 to 32"),
    ({"kvm_pci_reservations": True}, "must be an integer"),
    ({"kvm_extra": "-device 'unbalanced"}, "kvm_extra cannot be split"),
    ({"kernel_args": 5}, "kernel_args must be a string"),
    ({"initrd_path": "/i"}, "initrd_path needs kernel_path"),
])
def test_bad_hvparams_are_one_line_errors(params, message):
    with pytest.raises(KvmError) as err:
        hvparams.normalize(params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_kvm_extra_is_split_like_a_shell():
    hv = hvparams.normalize({"kvm_extra": "-device 'virtio-rng-pci,id=rng 0' -S", "kvm_pci_reservations": "20"})
    assert hvparams.extra_args(hv) == ["-device", "virtio-rng-pci,id=rng 0", "-S"]
    assert hv["kvm_pci_reservations"] == 20


@pytest.mark.parametrize("spec,message", [
    ({"path": "rel.img"}, "must be absolute"),
    ({"path": "/a.img", "format": "vmdk"}, "format 'vmdk'"),
    ({"path": "/a.img", "mode": "rx"}, "mode 'rx'"),
    ({"path": "/a.img", "size": 3}, "unknown key(s) size"),
    ({"path": "/a.img", "uuid": "nope"}, "is not a UUID"),
    ({}, "needs a 'path'"),
])
def test_bad_disk_specs(spec, message):
    with pytest.raises(KvmError) as err:
        devices.disk_record(spec, INST)
    assert message in str(err.value)


@pytest.mark.parametrize("spec,message", [
    ({"mac": "52:54:00:00:00"}, "is not a MAC"),
    ({"mac": "01:54:00:00:00:01"}, "multicast"),
    ({"network": {"type": "tap"}}, "needs an 'ifname'"),
    ({"network": {"type": "tap", "ifname": "a-very-long-interface-name"}}, "not an interface name"),
    ({"network": {"type": "vde"}}, "type 'vde'"),
    ({"vlan": 3}, "unknown key(s) vlan"),
])
def test_bad_nic_specs(spec, message):
    with pytest.raises(KvmError) as err:
        devices.nic_record(spec, INST, 0)
    assert message in str(err.value)


def test_identities_and_macs_are_deterministic():
    a = devices.disk_record({"path": "/a.img"}, INST)
    assert a == devices.disk_record({"path": "/a.img"}, INST)
    assert a["uuid"] != devices.disk_record({"path": "/b.img"}, INST)["uuid"]
    n0 = devices.nic_record({}, INST, 0)
    assert n0 == devices.nic_record({}, INST, 0)
    assert n0["mac"].startswith("52:54:00:") and n0["mac"] == devices.mac_from_uuid(n0["uuid"])
    assert devices.nic_record({"mac": "52:54:00:AA:BB:CC"}, INST)["mac"] == "52:54:00:aa:bb:cc"


