"""hvparams: the schema, the defaults, the driver tables and the machine helpers."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams


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


def test_defaults_and_a_base_other_than_the_defaults():
    hv = hvparams.normalize(None)
    assert hv == {**hvparams.DEFAULTS}
    assert hv is not hvparams.DEFAULTS
    hv["disk_type"] = "ide"
    assert hvparams.DEFAULTS["disk_type"] == "paravirtual"  # normalize never hands out the shared table
    based = hvparams.normalize({"nic_type": "e1000"}, base={**hvparams.DEFAULTS, "disk_type": "scsi-cd"})
    assert (based["disk_type"], based["nic_type"]) == ("scsi-cd", "e1000")


@pytest.mark.parametrize("machine", ["pc", "q35", "pc-i440fx-8.2", "pc-q35-10.1", "pc-i440fx-2.12"])
def test_supported_machines(machine):
    hv = hvparams.normalize({"machine_type": machine})
    assert hvparams.is_q35(hv) == ("q35" in machine)
    assert hvparams.root_bus(hv) == ("pcie.0" if "q35" in machine else "pci.0")


@pytest.mark.parametrize("machine", ["pc-i440fx-8", "pc-q35-100.1", "microvm", "pc ", "PC", "pc-i440fx-8.2,accel=kvm", 35, None])
def test_unsupported_machines(machine):
    with pytest.raises(KvmError, match="is not supported"):
        hvparams.normalize({"machine_type": machine})


@pytest.mark.parametrize("cpu", ["host", "qemu64", "Skylake-Server-v4", "host,+avx2", "host,-vmx,pmu=off", "EPYC,l3-cache=on,x=0x1f",
                                 "max,level=13"])
def test_cpu_types_follow_the_grammar(cpu):
    assert hvparams.normalize({"cpu_type": cpu})["cpu_type"] == cpu


@pytest.mark.parametrize("cpu", ["qemu64,model-id=PWNED", "host,,x", "host,+AVX", "-host", "host,", "host,a=b", "host,x=1 2", "a" * 65])
def test_cpu_types_outside_the_grammar_are_refused(cpu):
    with pytest.raises(KvmError, match="cpu_type"):
        hvparams.normalize({"cpu_type": cpu})


def test_empty_strings_mean_none_and_paths_must_be_absolute_and_clean():
    hv = hvparams.normalize({"cpu_type": "", "kernel_path": "", "kvm_extra": ""})
    assert (hv["cpu_type"], hv["kernel_path"], hv["kvm_extra"]) == (None, None, None)
    assert hvparams.extra_args(hv) == []
    with pytest.raises(KvmError, match="must be an absolute path"):
        hvparams.normalize({"kernel_path": "vmlinuz"})
    with pytest.raises(KvmError, match="control character"):
        hvparams.normalize({"kernel_path": "/boot/vmlinuz", "kernel_args": "console=ttyS0\nroot=/dev/x"})
    hv = hvparams.normalize({"kernel_path": "/boot/vmlinuz", "initrd_path": "/boot/initrd", "kernel_args": "quiet"})
    assert (hv["kernel_path"], hv["initrd_path"], hv["kernel_args"]) == ("/boot/vmlinuz", "/boot/initrd", "quiet")


@pytest.mark.parametrize("slots,ok", [(0, True), (240, True), ("7", True), (241, False), (-1, False), (True, False), (1.5, False),
                                      ("x", False)])
def test_pci_hotplug_slots_range(slots, ok):
    if ok:
        assert hvparams.normalize({"pci_hotplug_slots": slots})["pci_hotplug_slots"] == int(slots)
    else:
        with pytest.raises(KvmError, match=r"pci_hotplug_slots=.* must be an integer from 0 to 240"):
            hvparams.normalize({"pci_hotplug_slots": slots})


@pytest.mark.parametrize("res,ok", [(4, True), (32, True), (" 16 ", True), (3, False), (33, False), ("0x10", False), (None, False)])
def test_kvm_pci_reservations_range(res, ok):
    if ok:
        assert hvparams.normalize({"kvm_pci_reservations": res})["kvm_pci_reservations"] == int(res)
    else:
        with pytest.raises(KvmError, match=r"kvm_pci_reservations=.* must be an integer from 4 to 32"):
            hvparams.normalize({"kvm_pci_reservations": res})


def test_driver_tables_agree_with_each_other():
    # every disk type maps to a driver and back; SCSI types are the scsi-* drivers
    assert {hvparams.DRIVER_DISK_TYPES[d] for d in hvparams.DISK_DRIVERS.values()} == set(hvparams.DISK_DRIVERS)
    assert hvparams.SCSI_DEVICE_DRIVERS == {"scsi-hd", "scsi-block", "scsi-generic", "scsi-cd"}
    assert hvparams.PASSTHROUGH_DISK_TYPES < hvparams.SCSI_DISK_TYPES
    assert hvparams.CONTROLLER_DRIVERS == {"lsi53c895a", "megasas", "virtio-scsi-pci"}
    assert "virtio-blk-pci" in hvparams.PCI_DEVICE_DRIVERS and "e1000" in hvparams.PCI_DEVICE_DRIVERS
    assert not hvparams.PCI_DEVICE_DRIVERS & (hvparams.SCSI_DEVICE_DRIVERS | hvparams.CONTROLLER_DRIVERS)
    assert hvparams.IDE_SLOTS == (("ide.0", 0), ("ide.0", 1), ("ide.1", 0), ("ide.1", 1))
    assert (hvparams.PCI_LAST_SLOT, hvparams.Q35_LAST_SLOT) == (0x1F, 0x1E)


def test_is_scsi_follows_the_disk_type():
    assert [hvparams.is_scsi(hvparams.normalize({"disk_type": t})) for t in ("paravirtual", "ide", "scsi", "scsi-cd", "scsi-block")] == [
        False, False, True, True, True]
    assert hvparams.disk_driver(hvparams.normalize({"disk_type": "ide"}), "scsi-cd") == "scsi-cd"  # a disk's own type wins


@pytest.mark.parametrize("params", [{"machine_type": "pc\n"}, {"cpu_type": "host\n"}], ids=["machine", "cpu"])
def test_a_trailing_newline_is_refused(params):
    with pytest.raises(KvmError):
        hvparams.normalize(params)
