"""Ganeti's runtime layouts (2.0-3.1) read through the upgrader: every fixture reads, validates and renders; the
layout, hvparams and record of each era; the refusals."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import start
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed as qemu_fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import read as ganeti_read

from .runtimes import LINK0, hv, names, pci_slots, raw, read

PLUMBING = ("-pidfile", "-daemonize", "-monitor", "-qmp", "-chroot", "-runas", "-D", "-k", "-S")


def no_plumbing(rt: dict) -> None:
    assert not set(PLUMBING) & set(rt["kvm_cmd"]), rt["kvm_cmd"]
    assert all(isinstance(a, str) for a in rt["kvm_cmd"])
    assert "-serial" not in rt["kvm_cmd"] or rt["kvm_cmd"][rt["kvm_cmd"].index("-serial") + 1] == "none"


def test_every_fixture_reads_validates_and_renders():
    assert len(names()) >= 17
    for name in names():
        rt = read(name)
        no_plumbing(rt)
        assert rt["kvm_cmd"][-2:] == ["-net", "none"], name
        again = upgrade.upgrade(json.loads(runtime_file.dumps(rt)))  # the stored form reads back the same
        assert dict(again[0]) == rt and again[1] == upgrade.FORMAT_VERSION, name
        if fixed.unstartable(rt) is None:
            argv = start.illustrative_argv(rt)
            assert argv[0] == "/usr/bin/kvm" and "-sandbox" in argv, name


def test_2_0_three_elements_integers_boot_on_bridge_without_uuid():
    data = raw("v2_0_three_elements")
    assert len(data) == 3 and data[0][2] == 512 and data[0][4] == 1  # as Ganeti wrote them: integers
    rt = read("v2_0_three_elements")
    assert rt["ganeti"]["layout"] == ganeti_read.LAYOUT_DRIVES
    assert (rt["name"], rt["uuid"], rt["memory"], rt["vcpus"]) == ("vm1.example.org", None, 512, 1)
    assert rt["kvm_cmd"][:5] == ["/usr/bin/kvm", "-m", "512", "-smp", "1"]
    assert "-drive" not in rt["kvm_cmd"] and "-nographic" in rt["kvm_cmd"]
    assert rt["disks"] == [] and rt["nics"] == []
    nic, disk = rt["fixed"]
    mac_uuid = devices.derived_uuid("ganeti-nic", "aa:00:00:11:22:33")
    assert nic == {"kind": "nic", "mac": "aa:00:00:11:22:33", "uuid": mac_uuid, "uuid_from_mac": True,
                   "network": {"type": "tap", "ifname": "gnt" + mac_uuid.replace("-", "")[:12], "bridge": "xen-br0"},
                   "ganeti": {"bridge": "xen-br0"}, "driver": "virtio-net-pci", "netdev": "netdev0"}
    assert disk["path"] == LINK0 and disk["render"] == "device" and disk["driver"] == "virtio-blk-pci" and "at" not in disk
    assert any(mac_uuid in n and "derived from its MAC" in n for n in ganeti_read.notes(rt))
    assert rt["hvparams"]["kvm_pci_reservations"] == 12 and rt["hvparams"]["accel"] == "kvm"  # /usr/bin/kvm is QEMU with KVM
    assert rt["legacy_hvparams"]["root_path"] == "/dev/vda1" and "disk_type" not in rt["legacy_hvparams"]


def test_2_10_pci_slots_become_legacy_ids():
    rt = read("v2_10_pci_slots")
    assert rt["ganeti"]["layout"] == ganeti_read.LAYOUT_PCI
    assert [hv(d) for d in rt["disks"]] == [("hotdisk-8d2f0c4a-pci-4", "virtio-blk-pci", "pci.0", "0x4")]
    assert [hv(n) for n in rt["nics"]] == [("hotnic-e2c4a6b8-pci-5", "virtio-net-pci", "pci.0", "0x5")]
    disk = rt["disks"][0]
    assert (disk["uuid"], disk["path"], disk["uri"], disk["mode"]) == ("8d2f0c4a-1b2c-4d3e-9f8a-7b6c5d4e3f21", LINK0, None, "rw")
    assert disk["ganeti"] == {"dev_type": "plain", "logical_id": ["xenvg", "8d2f0c4a-1b2c-4d3e-9f8a-7b6c5d4e3f21.disk0"],
                              "iv_name": "disk/0", "size": 10240, "params": {"stripes": 1}}
    assert rt["nics"][0]["ganeti"]["nicparams"]["vlan"] == ""
    assert "fixed" not in rt
    bus = construct.bus_state(rt)  # the next hotplug goes from Ganeti's default reservation up
    assert pci_slots(rt) == {4, 5} and rt["hvparams"]["kvm_pci_reservations"] == 12
    assert bus.free_pci_leaves()[0] == ("pci.0", 12)


def test_2_16_scsi_disks_and_e1000_and_no_serial_port():
    rt = read("v2_16_scsi_e1000")
    assert [hv(d) for d in rt["disks"]] == [("disk-8d2f0c4a-1b2c-4d3e", "scsi-hd", "scsi.0", 0), ("disk-44444444-5555-4666", "scsi-hd", "scsi.0", 1)]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "e1000", "pci.0", "0xc")]
    assert (rt["hvparams"]["disk_type"], rt["hvparams"]["nic_type"], rt["hvparams"]["scsi_controller_type"]) == ("scsi-hd", "e1000", "lsi")
    assert rt["kvm_cmd"][rt["kvm_cmd"].index("-serial") + 1] == "none" and not qemu_fixed.has_serial(rt)
    argv = start.illustrative_argv(rt)
    assert "chardev:serial0" not in argv and argv.count("-serial") == 1  # no serial port the source did not have
    assert construct.bus_state(rt).used["scsi.0"] == {0, 1}
    assert rt["controllers"] == [{"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"}}]
    argv = start.illustrative_argv(rt)  # the controller stays where kvm_cmd has it, before the balloon; not added again
    assert argv.index("lsi,id=scsi") < argv.index("virtio-balloon") and not any('"id":"scsi"' in a for a in argv)


def test_3_0_guest_agent_chardev_file_disk_and_slots_below_0x10():
    rt = read("v3_0_guest_agent_file_disk")
    cmd = rt["kvm_cmd"]
    assert cmd[cmd.index("-chardev") + 1] == "null,id=qga0"
    assert "virtio-serial,id=qga0,bus=pci.0,addr=0xc" in cmd and "-D" not in cmd
    assert [hv(d) for d in rt["disks"]] == [("disk-5d6e7f80-9a1b-4c2d", "virtio-blk-pci", "pci.0", "0xd")]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "virtio-net-pci", "pci.0", "0xe")]
    assert rt["disks"][0]["ganeti"]["dev_type"] == "file" and rt["disks"][0]["ganeti"]["logical_id"][0] == "loop"
    assert rt["hvparams"]["kvm_pci_reservations"] == 12


def test_3_1_blockdev_cdrom_audio_and_a_gap_left_by_an_unplug():
    rt = read("v3_1_hotplug_gap")
    cmd = rt["kvm_cmd"]
    assert "virtio-blk-pci,drive=cdrom1" in cmd and cmd[cmd.index("-audio") + 1] == "driver=none,model=hda,id=soundhw"
    assert [hv(d) for d in rt["disks"]] == [("disk-8d2f0c4a-1b2c-4d3e", "virtio-blk-pci", "pci.0", "0xc"),
                                            ("disk-44444444-5555-4666", "virtio-blk-pci", "pci.0", "0xe")]
    assert [hv(n) for n in rt["nics"]] == [("nic-99999999-aaaa-4bbb", "virtio-net-pci", "pci.0", "0xf")]
    assert (rt["vcpus"], rt["hvparams"]["machine_type"]) == (4, "pc-i440fx-9.2")
    assert construct.bus_state(rt).free_pci_leaves()[0] == ("pci.0", 0xD)  # the gap is filled first


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d[2].update({"disk_type": "sd"}), "disk_type 'sd'"),
    (lambda d: d[2].update({"nic_type": "ne2k_isa"}), "ne2k_isa"),
    (lambda d: d[0].append(1.5), "element 23 is 1.5"),
    (lambda d: d[0].append(None), "neither a string nor an integer"),
    (lambda d: d[0].extend(["-usbdevice", "host:1234:5678"]), "-usbdevice 'host:1234:5678' is not supported"),
    (lambda d: d[0].extend(["-balloon", "xen"]), "only the virtio balloon"),
    (lambda d: d[1][0].update({"mac": "aa:00:00:11:22:33,id=x"}), "nic 0 must be a mapping with a MAC address"),
    (lambda d: d[1][0].update({"pci": 99}), "pci 99 is not a slot number"),
    (lambda d: d[1][0].update({"uuid": "not-a-uuid"}), "is not a UUID"),
    (lambda d: d[3][0].__setitem__(1, "relative/link"), "is not an absolute path"),
    (lambda d: d[3][0].__setitem__(1, None), "neither a link nor a uri"),
    (lambda d: d[3].append([{}, "/x"]), "is not [disk, link, uri]"),
    (lambda d: d[3][0][0].update({"hvinfo": {"driver": "virtio-blk-pci", "id": "d,x", "bus": "pci.0", "addr": "0x9"}}), "invalid device id"),
    (lambda d: d[3][0][0].update({"hvinfo": {"driver": "virtio-blk-pci", "id": "d1", "bus": "pci.0", "addr": "0x5"}}), "already taken"),
    (lambda d: d[0].__setitem__(slice(0, None), []), "kvm_cmd is empty"),
])
def test_what_cannot_be_read_is_one_clear_error(mutate, message):
    data = raw("v2_10_pci_slots")
    mutate(data)
    with pytest.raises(KvmError) as err:
        upgrade.upgrade(data)
    assert message in str(err.value) and "\n" not in str(err.value)
