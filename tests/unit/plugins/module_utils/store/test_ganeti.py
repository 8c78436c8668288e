"""Ganeti's runtime layouts (2.0-3.1) read through the upgrader: one fixture per variation, every id, address,
driver and uuid checked; the refusals; the export back; how fixed devices are put on a command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import fixed as fixed_devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import lifecycle
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.argv import HostFds, launch_argv
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, ganeti, runtime_file, upgrade

FIXTURES = Path(__file__).parent / "ganeti_fixtures"
LINK0 = "/var/run/ganeti/instance-disks/vm1.example.org:0"
LINK1 = "/var/run/ganeti/instance-disks/vm1.example.org:1"
INSTANCE_UUID = "0f7b3c1e-2a44-4d0b-8f3e-6c1d2b3a4f50"
PLUMBING = ("-pidfile", "-daemonize", "-monitor", "-qmp", "-chroot", "-runas", "-D", "-k", "-S")


def raw(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def read(name: str) -> dict:
    rt, version = upgrade.upgrade(raw(name), fresh=True)
    assert version == 0 and rt["version"] == upgrade.FORMAT_VERSION
    return dict(rt)


def pci_slots(rt: dict) -> set:
    return {addr[0] for addr in construct.bus_state(rt).used.get("pci.0", set()) if addr[1] is None}


def hv(dev: dict) -> tuple:
    info = dev["hvinfo"]
    return info["id"], info["driver"], info["bus"], info.get("addr", info.get("scsi-id"))


def no_plumbing(rt: dict) -> None:
    assert not set(PLUMBING) & set(rt["kvm_cmd"]), rt["kvm_cmd"]
    assert all(isinstance(a, str) for a in rt["kvm_cmd"])
    assert "-serial" not in rt["kvm_cmd"] or rt["kvm_cmd"][rt["kvm_cmd"].index("-serial") + 1] == "none"


def test_every_fixture_reads_validates_and_renders():
    names = sorted(p.stem for p in FIXTURES.glob("*.json"))
    assert len(names) >= 17
    for name in names:
        rt = read(name)
        no_plumbing(rt)
        assert rt["kvm_cmd"][-2:] == ["-net", "none"], name
        again = upgrade.upgrade(json.loads(runtime_file.dumps(rt)))  # the stored form reads back the same
        assert dict(again[0]) == rt and again[1] == upgrade.FORMAT_VERSION, name
        if fixed_devices.unstartable(rt) is None:
            argv = lifecycle.illustrative_argv(rt)
            assert argv[0] == "/usr/bin/kvm" and "-sandbox" in argv, name


def test_2_0_three_elements_integers_boot_on_bridge_without_uuid():
    data = raw("v2_0_three_elements")
    assert len(data) == 3 and data[0][2] == 512 and data[0][4] == 1  # as Ganeti wrote them: integers
    rt = read("v2_0_three_elements")
    assert rt["ganeti"]["layout"] == ganeti.LAYOUT_DRIVES
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
    assert any(mac_uuid in n and "derived from its MAC" in n for n in ganeti.notes(rt))
    assert rt["hvparams"]["kvm_pci_reservations"] == 12 and rt["hvparams"]["accel"] == "kvm"  # /usr/bin/kvm is QEMU with KVM
    assert rt["legacy_hvparams"]["root_path"] == "/dev/vda1" and "disk_type" not in rt["legacy_hvparams"]


def test_2_1_runas_localtime_usbdevice_ide_drives_in_place():
    rt = read("v2_1_runas_localtime_usbdevice")
    cmd = rt["kvm_cmd"]
    assert "-localtime" not in cmd and cmd[cmd.index("-rtc") + 1] == "base=localtime"
    assert "-usbdevice" not in cmd and cmd[cmd.index("-usb") + 1:cmd.index("-usb") + 3] == ["-device", "usb-tablet"]
    assert rt["ganeti"]["plumbing"][-2:] == [["-chroot", "/var/run/ganeti/kvm-hypervisor/chroot/vm1.example.org"], ["-runas", "kvmuser"]]
    nics = [n for n in rt["fixed"] if n["kind"] == "nic"]
    assert [n["mac"] for n in nics] == ["aa:00:00:11:22:33", "aa:00:00:44:55:66"]  # upper case MAC read as lower case
    assert [n["uuid_from_mac"] for n in nics] == [True, True] and [n["netdev"] for n in nics] == ["netdev0", "netdev1"]
    assert nics[1]["network"] == {"type": "tap", "ifname": nics[1]["network"]["ifname"]}  # routed: no bridge
    assert nics[1]["ganeti"] == {"ip": "192.0.2.10", "nicparams": {"mode": "routed", "link": "rt100"}}
    drives = [d for d in rt["fixed"] if d["kind"] == "disk"]
    assert [(d["path"], d["render"], d["drive"], d["at"]) for d in drives] == [
        (LINK0, "drive", {"if": "ide", "cache": "none"}, cmd.index("-boot") + 2),
        (LINK1, "drive", {"if": "ide", "cache": "none"}, cmd.index("-boot") + 2)]
    assert [key for key, _disk in fixed_devices.disks(rt)] == ["fixed2", "fixed2:ro", "fixed3", "fixed3:ro"]  # -drive opens read-only first
    fds = HostFds(3, 4, 5, {"fixed2": (20, False), "fixed2:ro": (22, False), "fixed3": (21, True), "fixed3:ro": (23, True)},
                  {"netdev0": 30, "netdev1": 31})
    head, _tail = fixed.render(rt, fds, 2)
    at = cmd.index("-boot") + 2
    assert head[at:at + 12] == ["-add-fd", "fd=20,set=2,opaque=fixed2", "-add-fd", "fd=22,set=2,opaque=fixed2",
                                "-drive", "file=/dev/fdset/2,format=raw,if=ide,cache=none",
                                "-add-fd", "fd=21,set=3,opaque=fixed3", "-add-fd", "fd=23,set=3,opaque=fixed3",
                                "-drive", "file=/dev/fdset/3,format=raw,if=ide,cache=none"]
    assert head[at + 12:at + 14] == ["-kernel", "/boot/vmlinuz-2.6-kvmU"]
    assert rt["hvparams"]["disk_type"] == "ide" and rt["legacy_hvparams"]["security_model"] == "user"


def test_2_6_balloon_and_spice_devices_keep_their_order():
    rt = read("v2_6_balloon_spice")
    cmd = rt["kvm_cmd"]
    assert cmd[cmd.index("-m") + 1] == "2048" and cmd[cmd.index("-smp") + 1] == "2"
    devs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    assert devs == ["virtio-balloon", "virtio-serial-pci", "virtserialport,chardev=spicechannel0,name=com.redhat.spice.0"]
    assert "-spice" in cmd and cmd[cmd.index("-vga") + 1] == "qxl"
    assert [d["kind"] for d in rt["fixed"]] == ["nic", "disk"]


def test_2_7_no_kvm_soundhw_and_an_old_machine_name():
    rt = read("v2_7_no_kvm_soundhw")
    cmd = rt["kvm_cmd"]
    assert "-no-kvm" not in cmd and cmd[cmd.index("-machine") + 1] == "accel=tcg"
    assert "-soundhw" not in cmd and cmd[cmd.index("-audio") + 1] == "driver=none,model=hda"
    # the rewritten -usbdevice goes before the first -device (QEMU created it before every -device)
    assert cmd[cmd.index("-smp") + 2:cmd.index("-smp") + 6] == ["-device", "usb-tablet", "-device", "virtio-balloon"]
    assert cmd[cmd.index("-M") + 1] == "pc-1.0"
    assert (rt["hvparams"]["machine_type"], rt["hvparams"]["accel"]) == ("pc", "tcg")  # kvm_cmd wins over defaults
    assert rt["hvparams"]["cpu_type"] is None and rt["legacy_hvparams"]["cpu_type"] == "qemu64"
    assert any("pc-1.0" in n for n in ganeti.notes(rt))


def test_2_9_nic_with_network_netinfo_and_nicparams():
    rt = read("v2_9_network_netinfo")
    nic = rt["fixed"][0]
    assert nic["uuid"] == "3b9e1c2d-7f6a-4e5b-8c9d-112233445566" and "uuid_from_mac" not in nic
    assert nic["network"] == {"type": "tap", "ifname": "gnt3b9e1c2d7f6a", "bridge": "br-net-a"}
    side = nic["ganeti"]
    assert side["ip"] == "198.51.100.10" and side["network"] == "5f0c2a8e-1111-4a4b-9c9d-0a1b2c3d4e5f"
    assert side["netinfo"]["network"] == "198.51.100.0/24" and side["nicparams"] == {"mode": "bridged", "link": "br-net-a"}
    assert (rt["uuid"], rt["hvparams"]["machine_type"], rt["hvparams"]["accel"]) == (INSTANCE_UUID, "pc-i440fx-1.7", "kvm")


def test_2_10_pci_slots_become_legacy_ids():
    rt = read("v2_10_pci_slots")
    assert rt["ganeti"]["layout"] == ganeti.LAYOUT_PCI
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


def test_2_15_rbd_disk_keeps_link_and_uri_and_vnc_tls_is_rewritten():
    rt = read("v2_15_rbd_vnc_tls")
    cmd = rt["kvm_cmd"]
    assert cmd[cmd.index("-object") + 1] == "tls-creds-x509,id=vnctls0,endpoint=server,dir=/etc/ganeti/vnc-pki,verify-peer=yes"
    assert cmd[cmd.index("-vnc") + 1] == "0.0.0.0:11,tls-creds=vnctls0" and cmd.index("-object") < cmd.index("-vnc")
    assert cmd[cmd.index("-smp") + 2:cmd.index("-smp") + 6] == ["-device", "usb-tablet", "-device", "virtio-balloon,id=balloon,bus=pci.0,addr=0x3"]
    assert [hv(d) for d in rt["disks"]] == [("hotdisk-8d2f0c4a-pci-4", "virtio-blk-pci", "pci.0", "0x4"),
                                            ("hotdisk-c41a7e55-pci-5", "virtio-blk-pci", "pci.0", "0x5")]
    rbd = rt["disks"][1]
    assert (rbd["path"], rbd["uri"]) == (LINK1, "rbd:rbd/c41a7e55-9d0b-4c1e-8a2f-0e9d8c7b6a54.rbd.disk1")
    assert rbd["ganeti"]["dev_type"] == "rbd" and rbd["ganeti"]["name"] == "data" and rbd["ganeti"]["params"]["access"] == "userspace"
    assert rbd["ganeti"]["serial_no"] == 1 and rbd["ganeti"]["ctime"] == 1420000000.5
    assert rt["disks"][0]["ganeti"]["nodes"] == ["6a1f0e2d-3c4b-4a59-8e7f-9d0c1b2a3e4f"] and rt["disks"][0]["ganeti"]["forthcoming"] is False
    assert "uri" in fixed_devices.unstartable(rt)


def test_2_15_resaved_from_2_9_mixes_a_placed_nic_a_drive_and_a_pci_nic():
    rt = read("v2_15_resaved_from_2_9")
    assert raw("v2_15_resaved_from_2_9")[3] == []
    assert [hv(n) for n in rt["nics"]] == [("hotnic-1a2b3c4d-pci-6", "virtio-net-pci", "pci.0", "0x6")]
    assert [(d["kind"], d.get("mac") or d.get("path")) for d in rt["fixed"]] == [("nic", "aa:00:01:00:00:0a"), ("disk", LINK0)]
    tail = fixed.render(rt, HostFds(3, 4, 5, {"fixed1": (20, False)}, {"netdev0": 30}), 2)[1]
    assert tail == ["-netdev", '{"type":"tap","id":"netdev0","fd":"30"}',
                    "-device", '{"driver":"virtio-net-pci","mac":"aa:00:01:00:00:0a","netdev":"netdev0"}',
                    "-add-fd", "fd=20,set=2,opaque=fixed1",
                    "-blockdev", '{"driver":"raw","node-name":"fixed1","read-only":false,"file":{"driver":"file","filename":"/dev/fdset/2","read-only":false}}',
                    "-device", '{"driver":"virtio-blk-pci","drive":"fixed1"}']
    argv = launch_argv(rt, HostFds(3, 4, 5, {"fixed1": (20, False)}, {"netdev0": 30, "hotnic-1a2b3c4d-pci-6": 31}))
    addressed = next(i for i, a in enumerate(argv) if a.startswith('{"driver":"virtio-net-pci","id":"hotnic-1a2b3c4d-pci-6"'))
    assert addressed < argv.index(tail[3])  # every addressed device before the ones QEMU places


def test_2_16_hvinfo_drbd_children_and_openvswitch_nic():
    rt = read("v2_16_drbd_ovs_hvinfo")
    assert rt["ganeti"]["layout"] == ganeti.LAYOUT_HVINFO
    assert [hv(d) for d in rt["disks"]] == [("disk-77a1c2d3-4e5f-4a6b", "virtio-blk-pci", "pci.0", "0xc")]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "virtio-net-pci", "pci.0", "0xd")]
    drbd = rt["disks"][0]["ganeti"]
    assert drbd["dev_type"] == "drbd" and drbd["logical_id"][5] is None and len(drbd["children"]) == 2
    assert drbd["children"][1]["size"] == 128
    assert rt["nics"][0]["network"] == {"type": "tap", "ifname": "gnte2c4a6b80d1f"}  # openvswitch: not ours to connect
    assert rt["nics"][0]["ganeti"]["nicparams"] == {"mode": "openvswitch", "link": "ovs0", "vlan": ".100"}
    assert any("openvswitch" in n for n in ganeti.notes(rt))
    assert rt["legacy_hvparams"]["disk_discard"] == "default"  # kept for the export, as Ganeti wrote it


def test_2_16_scsi_disks_and_e1000_and_no_serial_port():
    rt = read("v2_16_scsi_e1000")
    assert [hv(d) for d in rt["disks"]] == [("disk-8d2f0c4a-1b2c-4d3e", "scsi-hd", "scsi.0", 0), ("disk-44444444-5555-4666", "scsi-hd", "scsi.0", 1)]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "e1000", "pci.0", "0xc")]
    assert (rt["hvparams"]["disk_type"], rt["hvparams"]["nic_type"], rt["hvparams"]["scsi_controller_type"]) == ("scsi-hd", "e1000", "lsi")
    assert rt["kvm_cmd"][rt["kvm_cmd"].index("-serial") + 1] == "none" and not fixed.has_serial(rt)
    argv = lifecycle.illustrative_argv(rt)
    assert "chardev:serial0" not in argv and argv.count("-serial") == 1  # no serial port the source did not have
    assert construct.bus_state(rt).used["scsi.0"] == {0, 1}
    assert rt["controllers"] == [{"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"}}]
    argv = lifecycle.illustrative_argv(rt)  # the controller stays where kvm_cmd has it, before the balloon; not added again
    assert argv.index("lsi,id=scsi") < argv.index("virtio-balloon") and not any('"id":"scsi"' in a for a in argv)


def test_2_16_upgraded_legacy_ids_keep_the_running_qemus_names():
    rt = read("v2_16_upgraded_legacy_ids")
    assert [hv(d) for d in rt["disks"]] == [("hotdisk-8d2f0c4a-pci-4", "virtio-blk-pci", "pci.0", "0x4")]
    assert [hv(n) for n in rt["nics"]] == [("hotnic-e2c4a6b8-pci-6", "virtio-net-pci", "pci.0", "0x6"),
                                           ("nic-f0e1d2c3-b4a5-4697", "virtio-net-pci", "pci.0", "0xc")]
    assert list(rt["nics"][0]["hvinfo"]) == ["driver", "id", "bus", "addr"]  # Ganeti's key order normalised
    assert rt["nics"][1]["ganeti"] == {"name": "data2", "nicparams": {"mode": "bridged", "link": "br1", "vlan": ""}}
    assert rt["nics"][1]["network"]["bridge"] == "br1"


def test_3_0_guest_agent_chardev_file_disk_and_slots_below_0x10():
    rt = read("v3_0_guest_agent_file_disk")
    cmd = rt["kvm_cmd"]
    assert cmd[cmd.index("-chardev") + 1] == "null,id=qga0"
    assert "virtio-serial,id=qga0,bus=pci.0,addr=0xc" in cmd and "-D" not in cmd
    assert [hv(d) for d in rt["disks"]] == [("disk-5d6e7f80-9a1b-4c2d", "virtio-blk-pci", "pci.0", "0xd")]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "virtio-net-pci", "pci.0", "0xe")]
    assert rt["disks"][0]["ganeti"]["dev_type"] == "file" and rt["disks"][0]["ganeti"]["logical_id"][0] == "loop"
    assert rt["hvparams"]["kvm_pci_reservations"] == 12


def test_3_0_chroot_without_vnc_is_dropped_anyway():
    rt = read("v3_0_chroot_without_vnc")
    assert "-chroot" not in rt["kvm_cmd"] and ["-chroot", "/var/run/ganeti/kvm-hypervisor/chroot/vm1.example.org"] in rt["ganeti"]["plumbing"]
    assert rt["legacy_hvparams"]["use_chroot"] is True


def test_3_1_blockdev_cdrom_audio_and_a_gap_left_by_an_unplug():
    rt = read("v3_1_hotplug_gap")
    cmd = rt["kvm_cmd"]
    assert "virtio-blk-pci,drive=cdrom1" in cmd and cmd[cmd.index("-audio") + 1] == "driver=none,model=hda,id=soundhw"
    assert [hv(d) for d in rt["disks"]] == [("disk-8d2f0c4a-1b2c-4d3e", "virtio-blk-pci", "pci.0", "0xc"),
                                            ("disk-44444444-5555-4666", "virtio-blk-pci", "pci.0", "0xe")]
    assert [hv(n) for n in rt["nics"]] == [("nic-99999999-aaaa-4bbb", "virtio-net-pci", "pci.0", "0xf")]
    assert (rt["vcpus"], rt["hvparams"]["machine_type"]) == (4, "pc-i440fx-9.2")
    assert construct.bus_state(rt).free_pci_leaves()[0] == ("pci.0", 0xD)  # the gap is filled first


def test_userspace_disks_keep_link_and_uri_even_without_a_link():
    rt = read("v3_0_userspace_gluster_ext")
    assert [(d["path"], d["uri"]) for d in rt["disks"]] == [
        (LINK0, f"gluster://203.0.113.5:24007/gv0/ganeti/{INSTANCE_UUID}.0"), (None, "rbd:ssd/volume-ext-1")]
    assert [d["ganeti"]["dev_type"] for d in rt["disks"]] == ["gluster", "ext"]
    assert rt["disks"][0]["ganeti"]["params"] == {"access": "userspace", "host": "203.0.113.5", "port": 24007, "volume": "gv0"}
    assert rt["nics"] == [] and "uri" in fixed_devices.unstartable(rt)


def test_ide_disk_with_a_ganeti_pci_slot_is_placed_by_qemu():
    rt = read("v2_16_ide_disk")
    assert rt["disks"] == [] and [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "rtl8139", "pci.0", "0xd")]
    disk = rt["fixed"][0]
    assert (disk["uuid"], disk["driver"], disk["render"], disk["ganeti"]["iv_name"]) == (
        "8d2f0c4a-1b2c-4d3e-9f8a-7b6c5d4e3f21", "ide-hd", "device", "disk/0")
    assert pci_slots(rt) == {0xD}  # Ganeti's bogus 0xc is not a slot anyone holds


def test_empty_argument_paused_start_keymap_path_and_multiqueue():
    rt = read("v2_12_extra_paused_multiqueue")
    cmd = rt["kvm_cmd"]
    assert "" not in cmd and "-S" not in cmd and "-k" not in cmd
    assert cmd[-5:] == ["-no-hpet", "-global", "PIIX4_PM.disable_s3=1", "-net", "none"]
    assert any("empty argument" in n for n in ganeti.notes(rt))
    assert "virtio_net_queues=4" in fixed_devices.unstartable(rt)


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


def test_qemuopts_text_round_trips_commas():
    assert ganeti.split_opts("file=/a,,b,if=virtio,boot=on") == ["file=/a,b", "if=virtio", "boot=on"]
    assert ganeti.join_opts(["file=/a,b", "if=virtio"]) == "file=/a,,b,if=virtio"
    data = raw("v2_0_three_elements")
    data[0][data[0].index("-drive") + 1] = "file=/srv/a,,b.img,format=raw,if=virtio"
    assert read_data(data)["fixed"][1]["path"] == "/srv/a,b.img"


def read_data(data) -> dict:
    return dict(upgrade.upgrade(data)[0])


def test_cdrom_and_url_drives_stay_in_kvm_cmd_without_boot_on():
    data = raw("v2_0_three_elements")
    data[0] += ["-drive", "file=/srv/iso/x.iso,media=cdrom,format=raw,if=ide,boot=on", "-drive", "file=http://192.0.2.9/x.iso,media=cdrom"]
    cmd = read_data(data)["kvm_cmd"]
    assert "file=/srv/iso/x.iso,media=cdrom,format=raw,if=ide" in cmd and "file=http://192.0.2.9/x.iso,media=cdrom" in cmd


def test_validation_refuses_hostile_fixed_devices_and_adoption():
    good = read("v2_1_runas_localtime_usbdevice")
    for mutate, message in [
        (lambda rt: rt["fixed"][2]["drive"].update({"file": "/etc/shadow"}), "drive option file="),
        (lambda rt: rt["fixed"][2]["drive"].update({"cache": "none,id=x"}), "drive option cache="),
        (lambda rt: rt["fixed"][2].update({"at": 999}), "not inside kvm_cmd"),
        (lambda rt: rt["fixed"][0].update({"driver": "virtio-net-pci,romfile=/x"}), "not a NIC driver"),
        (lambda rt: rt["fixed"][1].update({"netdev": "netdev0"}), "used twice"),
        (lambda rt: rt["fixed"][0].update({"network": {"type": "tap", "ifname": "a;b"}}), "not an interface name"),
        (lambda rt: rt.update({"adopted": {"qmp": "relative.sock", "pidfile": "/p"}}), "must be an absolute path"),
        (lambda rt: rt.update({"adopted": {"qmp": "/q", "pidfile": "/p", "evil": 1}}), "must be a mapping of runtime, qmp, pidfile and started"),
        (lambda rt: rt.update({"adopted": {"qmp": "/q", "pidfile": "/p", "started": -1}}), "adopted started must be a start time"),
    ]:
        rt = json.loads(json.dumps(good))
        mutate(rt)
        with pytest.raises(KvmError) as err:
            upgrade.upgrade(rt)
        assert message in str(err.value), (message, str(err.value))


# -- export -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["v2_16_drbd_ovs_hvinfo", "v3_1_hotplug_gap", "v2_16_scsi_e1000", "v2_16_upgraded_legacy_ids",
                                  "v3_0_guest_agent_file_disk", "v2_15_resaved_from_2_9", "v2_9_network_netinfo"])
def test_export_layout_3_reads_back_to_the_same_devices(name):
    rt = read(name)
    out = ganeti.export(rt, "3")
    assert len(out) == 4 and ganeti.dumps(out).count("\n") == 1
    cmd = out[0]
    assert cmd[cmd.index("-m") + 1] == rt["memory"] and isinstance(cmd[cmd.index("-m") + 1], int)
    assert "-pidfile" in cmd and "-daemonize" in cmd and "-qmp" not in cmd and cmd[-2:] != ["-net", "none"]
    again = read_data(json.loads(json.dumps(out)))
    for kind in ("disks", "nics"):
        assert [d["hvinfo"] for d in again[kind]] == [d["hvinfo"] for d in rt[kind]], kind
        assert [d.get("ganeti") for d in again[kind]] == [d.get("ganeti") for d in rt[kind]], kind
    assert [{k: v for k, v in d.items() if k != "at"} for d in again.get("fixed", [])] == \
        [{k: v for k, v in d.items() if k != "at"} for d in rt.get("fixed", [])]
    assert again["kvm_cmd"] == rt["kvm_cmd"] and again["hvparams"] == rt["hvparams"]


def test_export_layout_2_uses_pci_slots_and_refuses_what_2x_cannot_hold():
    rt = read("v2_10_pci_slots")
    out = ganeti.export(rt, "2", running=True)
    assert [n["pci"] for n in out[1]] == [5] and [d[0]["pci"] for d in out[3]] == [4] and "hvinfo" not in out[1][0]
    assert out[3][0][0]["dev_type"] == "plain" and out[3][0][1:] == [LINK0, None]
    assert read_data(json.loads(json.dumps(out)))["disks"][0]["hvinfo"] == rt["disks"][0]["hvinfo"]
    with pytest.raises(KvmError, match="would be called hotnic-e2c4a6b8-pci-14 there"):
        ganeti.export(read("v3_0_guest_agent_file_disk"), "2", running=True)
    assert ganeti.export(read("v3_0_guest_agent_file_disk"), "2")[1][0]["pci"] == 0xE  # a stopped instance gets new ids
    with pytest.raises(KvmError, match=r"needs Ganeti 2\.16 or later"):
        ganeti.export(read("v2_16_scsi_e1000"), "2")
    with pytest.raises(KvmError, match="layout '4' is not one of"):
        ganeti.export(rt, "4")


def native(disk_type: str = "paravirtual", **extra) -> dict:
    hv = hvparams.normalize({"disk_type": disk_type, "accel": "tcg", **extra})
    inst = devices.derived_uuid("instance", "web1")
    disks = [devices.disk_record({"path": f"/srv/d{i}.img"}, inst) for i in range(2)]
    nics = [devices.nic_record({"mac": "52:54:00:00:00:01"}, inst)]
    return dict(construct.new_runtime("web1", inst, 256, 1, hv, "qemu-system-x86_64", disks, nics))


def test_export_of_a_native_instance_adds_ganeti_plumbing():
    rt = native()
    out = ganeti.export(rt, "3")
    cmd = out[0]
    assert cmd[1:3] == ["-pidfile", "/var/run/ganeti/kvm-hypervisor/pid/web1"]
    assert "unix:/var/run/ganeti/kvm-hypervisor/ctrl/web1.serial,server,nowait" in cmd and cmd[cmd.index("-m") + 1] == 256
    assert [n["hvinfo"]["addr"] for n in out[1]] == ["0x12"] and out[2]["kvm_pci_reservations"] == 16
    assert [d[1] for d in out[3]] == ["/srv/d0.img", "/srv/d1.img"]
    assert [d[0]["hvinfo"]["id"] for d in out[3]] == [d["hvinfo"]["id"] for d in rt["disks"]]
    rt["kvm_extra"] = ["-device", "virtio-rng-pci"]  # the extras are part of the device tree a Ganeti target starts
    assert ganeti.export(rt, "3")[0][-2:] == ["-device", "virtio-rng-pci"]
    rt["kvm_extra"] = []
    scsi = native("scsi-hd", scsi_controller_type="virtio-scsi-pci")  # its controller is a recorded PCI device
    with pytest.raises(KvmError, match="SCSI controller scsi is a recorded PCI device"):
        ganeti.export(scsi, "3")
    ganeti_scsi = read("v2_16_scsi_e1000")
    assert [d[0]["hvinfo"]["scsi-id"] for d in ganeti.export(ganeti_scsi, "3")[3]] == [0, 1]
    ganeti_scsi["disks"][1]["hvinfo"]["scsi-id"] = 20
    with pytest.raises(KvmError, match="targets 0-15"):
        ganeti.export(ganeti_scsi, "3")
    with pytest.raises(KvmError, match="is part of the running instance's device tree"):
        ganeti.export(rt, "3", running=True)  # the unused bridge would be gone under Ganeti
    qcow = native()
    qcow["disks"][0]["format"] = "qcow2"
    with pytest.raises(KvmError, match="only runs raw disks"):
        ganeti.export(qcow, "3")


def test_an_unknown_flag_never_swallows_the_option_after_it():
    assert ganeti.groups_of(["kvm", "-sdl", "-incoming", "tcp:0:4444", "-m", "512"]) == [
        ["-sdl"], ["-incoming", "tcp:0:4444"], ["-m", "512"]]
    assert ganeti.groups_of(["kvm", "-some-new-flag", "-daemonize", "-name", "vm1"]) == [
        ["-some-new-flag"], ["-daemonize"], ["-name", "vm1"]]
    assert ganeti.groups_of(["kvm", "-append", "console=ttyS0 -v"])[0] == ["-append", "console=ttyS0 -v"]
