"""Ganeti's NIC and disk dicts of each era -> records (ids kept as the running QEMU knows them) or fixed devices;
Ganeti's own fields kept aside; how a start puts the fixed ones back."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.argv import HostFds, launch_argv
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed as qemu_fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import read as ganeti_read

from .runtimes import INSTANCE_UUID, LINK0, LINK1, hv, pci_slots, raw, read


def test_2_9_nic_with_network_netinfo_and_nicparams():
    rt = read("v2_9_network_netinfo")
    nic = rt["fixed"][0]
    assert nic["uuid"] == "3b9e1c2d-7f6a-4e5b-8c9d-112233445566" and "uuid_from_mac" not in nic
    assert nic["network"] == {"type": "tap", "ifname": "gnt3b9e1c2d7f6a", "bridge": "br-net-a"}
    side = nic["ganeti"]
    assert side["ip"] == "198.51.100.10" and side["network"] == "5f0c2a8e-1111-4a4b-9c9d-0a1b2c3d4e5f"
    assert side["netinfo"]["network"] == "198.51.100.0/24" and side["nicparams"] == {"mode": "bridged", "link": "br-net-a"}
    assert (rt["uuid"], rt["hvparams"]["machine_type"], rt["hvparams"]["accel"]) == (INSTANCE_UUID, "pc-i440fx-1.7", "kvm")


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
    assert "uri" in fixed.unstartable(rt)


def test_2_15_resaved_from_2_9_mixes_a_placed_nic_a_drive_and_a_pci_nic():
    rt = read("v2_15_resaved_from_2_9")
    assert raw("v2_15_resaved_from_2_9")[3] == []
    assert [hv(n) for n in rt["nics"]] == [("hotnic-1a2b3c4d-pci-6", "virtio-net-pci", "pci.0", "0x6")]
    assert [(d["kind"], d.get("mac") or d.get("path")) for d in rt["fixed"]] == [("nic", "aa:00:01:00:00:0a"), ("disk", LINK0)]
    tail = qemu_fixed.render(rt, HostFds(3, 4, 5, {"fixed1": (20, False)}, {"netdev0": 30}), 2)[1]
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
    assert rt["ganeti"]["layout"] == ganeti_read.LAYOUT_HVINFO
    assert [hv(d) for d in rt["disks"]] == [("disk-77a1c2d3-4e5f-4a6b", "virtio-blk-pci", "pci.0", "0xc")]
    assert [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "virtio-net-pci", "pci.0", "0xd")]
    drbd = rt["disks"][0]["ganeti"]
    assert drbd["dev_type"] == "drbd" and drbd["logical_id"][5] is None and len(drbd["children"]) == 2
    assert drbd["children"][1]["size"] == 128
    assert rt["nics"][0]["network"] == {"type": "tap", "ifname": "gnte2c4a6b80d1f"}  # openvswitch: not ours to connect
    assert rt["nics"][0]["ganeti"]["nicparams"] == {"mode": "openvswitch", "link": "ovs0", "vlan": ".100"}
    assert any("openvswitch" in n for n in ganeti_read.notes(rt))
    assert rt["legacy_hvparams"]["disk_discard"] == "default"  # kept for the export, as Ganeti wrote it


def test_2_16_upgraded_legacy_ids_keep_the_running_qemus_names():
    rt = read("v2_16_upgraded_legacy_ids")
    assert [hv(d) for d in rt["disks"]] == [("hotdisk-8d2f0c4a-pci-4", "virtio-blk-pci", "pci.0", "0x4")]
    assert [hv(n) for n in rt["nics"]] == [("hotnic-e2c4a6b8-pci-6", "virtio-net-pci", "pci.0", "0x6"),
                                           ("nic-f0e1d2c3-b4a5-4697", "virtio-net-pci", "pci.0", "0xc")]
    assert list(rt["nics"][0]["hvinfo"]) == ["driver", "id", "bus", "addr"]  # Ganeti's key order normalised
    assert rt["nics"][1]["ganeti"] == {"name": "data2", "nicparams": {"mode": "bridged", "link": "br1", "vlan": ""}}
    assert rt["nics"][1]["network"]["bridge"] == "br1"


def test_userspace_disks_keep_link_and_uri_even_without_a_link():
    rt = read("v3_0_userspace_gluster_ext")
    assert [(d["path"], d["uri"]) for d in rt["disks"]] == [
        (LINK0, f"gluster://203.0.113.5:24007/gv0/ganeti/{INSTANCE_UUID}.0"), (None, "rbd:ssd/volume-ext-1")]
    assert [d["ganeti"]["dev_type"] for d in rt["disks"]] == ["gluster", "ext"]
    assert rt["disks"][0]["ganeti"]["params"] == {"access": "userspace", "host": "203.0.113.5", "port": 24007, "volume": "gv0"}
    assert rt["nics"] == [] and "uri" in fixed.unstartable(rt)


def test_ide_disk_with_a_ganeti_pci_slot_is_placed_by_qemu():
    rt = read("v2_16_ide_disk")
    assert rt["disks"] == [] and [hv(n) for n in rt["nics"]] == [("nic-e2c4a6b8-0d1f-4e3a", "rtl8139", "pci.0", "0xd")]
    disk = rt["fixed"][0]
    assert (disk["uuid"], disk["driver"], disk["render"], disk["ganeti"]["iv_name"]) == (
        "8d2f0c4a-1b2c-4d3e-9f8a-7b6c5d4e3f21", "ide-hd", "device", "disk/0")
    assert pci_slots(rt) == {0xD}  # Ganeti's bogus 0xc is not a slot anyone holds
