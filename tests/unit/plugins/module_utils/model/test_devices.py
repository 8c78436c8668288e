"""Disk and NIC records: specs in, runtime records out; disk uris; QEMU backend arguments."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices

INST = "00000000-0000-4000-8000-000000000000"
DISK_UUID = "7c079136-aaaa-4bbb-8ccc-123456abcdef"
# The namespace is part of the stored contract (a re-run must derive the same uuids): spelled out here.
NAMESPACE = uuidlib.UUID("6b1f2d4e-3c1a-5e8b-9a47-0c2d8e6f4a10")


def oracle_uuid(text: str) -> str:
    return str(uuidlib.uuid5(NAMESPACE, text))


# -- identities ---------------------------------------------------------------


def test_derived_identities_are_uuid5_of_instance_kind_and_name():
    assert devices.disk_record({"path": "/a.img"}, INST)["uuid"] == oracle_uuid(f"{INST}/disk//a.img")
    assert devices.disk_record({"uri": "nbd://h/e"}, INST)["uuid"] == oracle_uuid(f"{INST}/disk/nbd://h/e")
    assert devices.nic_record({"mac": "52:54:00:AA:BB:CC"}, INST)["uuid"] == oracle_uuid(f"{INST}/nic/52:54:00:aa:bb:cc")
    assert devices.nic_record({}, INST, 3)["uuid"] == oracle_uuid(f"{INST}/nic/3")
    assert devices.derived_uuid("instance", "vm1") == oracle_uuid("instance/vm1")


def test_instance_uuid_is_the_given_one_or_derived_from_the_name():
    assert devices.instance_uuid("vm1") == oracle_uuid("instance/vm1")
    assert devices.instance_uuid("vm1", None) == devices.instance_uuid("vm1", "") == oracle_uuid("instance/vm1")
    assert devices.instance_uuid("vm1", DISK_UUID) == DISK_UUID


def test_mac_from_uuid_takes_the_last_six_digits():
    assert devices.mac_from_uuid(DISK_UUID) == "52:54:00:ab:cd:ef"
    nic = devices.nic_record({"uuid": DISK_UUID.upper()}, INST)
    assert nic == {"uuid": DISK_UUID, "mac": "52:54:00:ab:cd:ef", "network": None}


# -- disks ----------------------------------------------------------------------


def test_disk_record_defaults_and_normalisation():
    assert devices.disk_record({"path": "/a.img", "format": None, "mode": None}, INST) == {
        "uuid": oracle_uuid(f"{INST}/disk//a.img"), "path": "/a.img", "format": "raw", "mode": "rw"}
    rec = devices.disk_record({"path": "/a.qcow2", "format": "qcow2", "mode": "ro", "uuid": DISK_UUID.upper(), "type": "scsi"}, INST)
    assert rec == {"uuid": DISK_UUID, "path": "/a.qcow2", "format": "qcow2", "mode": "ro", "type": "scsi-hd"}
    assert devices.disk_record({"path": "/cd.iso", "type": "scsi-cd"}, INST)["mode"] == "ro"  # a CD defaults to read-only
    assert devices.disk_record({"path": "/cd.iso", "type": "scsi-cd", "mode": "rw"}, INST)["mode"] == "rw"


def test_network_disk_and_empty_cd_records():
    rec = devices.disk_record({"uri": "iscsi://t.example/iqn.2026-01.x:t1/1", "type": "scsi-block"}, INST)
    assert rec == {"uuid": oracle_uuid(f"{INST}/disk/iscsi://t.example/iqn.2026-01.x:t1/1"), "path": None, "format": "raw",
                   "mode": "rw", "uri": "iscsi://t.example/iqn.2026-01.x:t1/1", "type": "scsi-block"}
    empty = devices.disk_record({"type": "scsi-cd", "uuid": DISK_UUID}, INST)
    assert empty == {"uuid": DISK_UUID, "path": None, "format": "raw", "mode": "ro", "type": "scsi-cd"}
    assert not devices.has_medium(empty) and devices.has_medium(rec) and devices.has_medium({"path": "/a"})


@pytest.mark.parametrize("spec,message", [
    ("/a.img", "must be a mapping"),
    ({"path": "rel.img"}, "must be absolute"),
    ({"path": 7}, "must be absolute"),
    ({"path": "/a\nb.img"}, "control character"),
    ({"path": "/a.img", "format": "vmdk"}, "format 'vmdk'"),
    ({"path": "/a.img", "mode": "rx"}, "mode 'rx'"),
    ({"path": "/a.img", "size": 3}, "unknown key(s) size"),
    ({"path": "/a.img", "uuid": "nope"}, "is not a UUID"),
    ({"path": "/a.img", "type": "nvme"}, "disk type 'nvme' is not one of"),
    ({"path": "/a.img", "uri": "nbd://h/e"}, "give a path or a uri, not both"),
    ({"uri": "rbd:pool/x"}, "is not iscsi://"),
    ({}, "needs a 'path'"),
    ({"type": "scsi-cd"}, "an empty scsi-cd needs a 'uuid'"),
    ({"type": "scsi-hd", "uuid": DISK_UUID}, "needs a 'path'"),
])
def test_bad_disk_specs(spec, message):
    with pytest.raises(KvmError) as err:
        devices.disk_record(spec, INST)
    assert message in str(err.value)


# -- disk uris ------------------------------------------------------------------


@pytest.mark.parametrize("uri,node", [
    ("iscsi://t.example/iqn.2026-01.x:t1/0",
     {"driver": "iscsi", "transport": "tcp", "portal": "t.example:3260", "target": "iqn.2026-01.x:t1", "lun": 0}),
    ("iscsi://10.0.0.1:3261/iqn.2026-01.x:t1/12",
     {"driver": "iscsi", "transport": "tcp", "portal": "10.0.0.1:3261", "target": "iqn.2026-01.x:t1", "lun": 12}),
    ("iscsi://[fd00::1]/iqn.2026-01.x/1",
     {"driver": "iscsi", "transport": "tcp", "portal": "[fd00::1]:3260", "target": "iqn.2026-01.x", "lun": 1}),
    ("nbd://nbd.example/export-1", {"driver": "nbd", "server": {"type": "inet", "host": "nbd.example", "port": "10809"},
                                    "export": "export-1"}),
    ("nbd://10.0.0.2:10900/e", {"driver": "nbd", "server": {"type": "inet", "host": "10.0.0.2", "port": "10900"}, "export": "e"}),
])
def test_disk_uri_grammar(uri, node):
    assert devices.disk_uri(uri) == node


@pytest.mark.parametrize("uri", [
    "iscsi://user:secret@t.example/iqn.2026-01.x:t1/0",  # credentials would show in query-block
    "iscsi://user%secret@t.example/iqn.2026-01.x:t1/0",
    "nbd://user:pw@h/e",
    "iscsi://t.example/iqn.2026-01.x:t1/0?password=x",
    "nbd://h/e?tls-creds=x",
    "iscsi://t.example/not-an-iqn/0",
    "iscsi://t.example/iqn.x/lun",
    "iscsi://t.example/iqn.x/123456",
    "nbd://h/e/f",
    "nbd://h/" + "e" * 65,
    "nbd://h/e\nx",
    "nbd://h:/e",
    "nbd://h:123456/e",
    "rbd:pool/x",
    "file:///etc/shadow",
    "NBD://h/e",
    "",
    None,
])
def test_disk_uri_refuses_everything_else(uri):
    with pytest.raises(KvmError, match="no credentials"):
        devices.disk_uri(uri)


@pytest.mark.parametrize("check", [
    lambda: devices.disk_uri("nbd://h/e\n"),
    lambda: devices.disk_uri("iscsi://t/iqn.x/0\n"),
    lambda: devices.nic_record({"mac": "52:54:00:00:00:01\n"}, INST),
    lambda: devices.network_record({"type": "tap", "ifname": "tap0\n"}),
], ids=["nbd", "iscsi", "mac", "ifname"])
def test_a_trailing_newline_is_refused(check):
    with pytest.raises(KvmError):
        check()


def test_nbd_ipv6_host_is_the_bare_address():
    assert devices.disk_uri("nbd://[fd00::2]/e")["server"]["host"] == "fd00::2"
    assert devices.disk_uri("iscsi://[fd00::2]/iqn.x/0")["portal"] == "[fd00::2]:3260"  # libiscsi's portal keeps them


@pytest.mark.parametrize("uri", ["nbd://h:1/e", "nbd://h:65535/e", "iscsi://t:65535/iqn.x/0"])
def test_disk_uri_ports_at_the_ends_of_the_range(uri):
    devices.disk_uri(uri)


@pytest.mark.parametrize("uri", ["nbd://h:0/e", "nbd://h:99999/e", "iscsi://t:70000/iqn.x/0"])
def test_disk_uri_ports_are_in_range(uri):
    with pytest.raises(KvmError):
        devices.disk_uri(uri)


# -- NICs and networks ------------------------------------------------------------


def test_nic_records():
    assert devices.nic_record({"mac": "52:54:00:AA:BB:CC", "network": {"type": "user", "ifname": None}}, INST) == {
        "uuid": oracle_uuid(f"{INST}/nic/52:54:00:aa:bb:cc"), "mac": "52:54:00:aa:bb:cc", "network": {"type": "user"}}
    tap = devices.nic_record({"uuid": DISK_UUID, "network": {"type": "tap", "ifname": "tap0", "bridge": "br-0.a"}}, INST)
    assert tap["network"] == {"type": "tap", "ifname": "tap0", "bridge": "br-0.a"}
    # a uuid wins over the MAC for the identity; the given MAC is kept
    both = devices.nic_record({"uuid": DISK_UUID, "mac": "52:54:00:00:00:02"}, INST, 0)
    assert (both["uuid"], both["mac"]) == (DISK_UUID, "52:54:00:00:00:02")


@pytest.mark.parametrize("spec,message", [
    ([], "must be a mapping"),
    ({"mac": "52:54:00:00:00"}, "is not a MAC"),
    ({"mac": "52-54-00-00-00-01"}, "is not a MAC"),
    ({"mac": 525400000001}, "is not a MAC"),
    ({"mac": "01:54:00:00:00:01"}, "multicast"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "multicast"),
    ({"network": {"type": "tap"}}, "needs an 'ifname'"),
    ({"network": {"type": "tap", "ifname": "a-very-long-interface-name"}}, "not an interface name"),
    ({"network": {"type": "tap", "ifname": "tap0", "bridge": "br 0"}}, "not an interface name"),
    ({"network": {"type": "tap", "ifname": "tap0", "vlan": 3}}, "unknown key(s) vlan"),
    ({"network": {"type": "user", "ifname": "tap0"}}, "unknown key(s) ifname"),
    ({"network": {"type": "vde"}}, "type 'vde'"),
    ({"network": "tap0"}, "must be a mapping with a 'type'"),
    ({"vlan": 3}, "unknown key(s) vlan"),
    ({"uuid": "x"}, "is not a UUID"),
])
def test_bad_nic_specs(spec, message):
    with pytest.raises(KvmError) as err:
        devices.nic_record(spec, INST, 0)
    assert message in str(err.value)


def test_network_records_are_copies():
    given = {"type": "tap", "ifname": "tap0"}
    made = devices.network_record(given)
    made["bridge"] = "br0"
    assert given == {"type": "tap", "ifname": "tap0"}


def test_a_nic_without_mac_uuid_or_index_cannot_be_identified():
    with pytest.raises(KvmError, match="needs a 'mac' or a 'uuid'"):
        devices.nic_record({}, INST)
    assert devices.network_record(None) is None


# -- QEMU arguments -----------------------------------------------------------------


def disk(**extra) -> dict:
    return {"uuid": DISK_UUID, "path": "/a.img", "format": "qcow2", "mode": "rw",
            "hvinfo": {"driver": "virtio-blk-pci", "id": "disk-7c079136", "bus": "pci.0", "addr": "0x10"}, **extra}


def test_blockdev_args_for_files_block_devices_and_uris():
    assert devices.blockdev_args(disk(), "/dev/fdset/2") == {
        "driver": "qcow2", "node-name": "disk-7c079136", "read-only": False,
        "file": {"driver": "file", "filename": "/dev/fdset/2", "read-only": False}}
    ro = devices.blockdev_args(disk(mode="ro", format="raw"), "/dev/fdset/3", host_device=True)
    assert ro == {"driver": "raw", "node-name": "disk-7c079136", "read-only": True,
                  "file": {"driver": "host_device", "filename": "/dev/fdset/3", "read-only": True}}
    net = devices.blockdev_args(disk(path=None, uri="nbd://h/e", mode="ro"), None)
    assert net == {"driver": "nbd", "server": {"type": "inet", "host": "h", "port": "10809"}, "export": "e",
                   "node-name": "disk-7c079136", "read-only": True}


def test_device_extras_link_the_backend_only_when_there_is_one():
    assert devices.disk_device_extra(disk()) == {"drive": "disk-7c079136"}
    assert devices.disk_device_extra(disk(path=None)) == {"drive": None}
    nic = {"uuid": DISK_UUID, "mac": "52:54:00:00:00:01", "hvinfo": {"id": "nic-1"}}
    assert devices.nic_device_extra({**nic, "network": None}) == {"netdev": None, "mac": "52:54:00:00:00:01"}
    assert devices.nic_device_extra({**nic, "network": {"type": "user"}}) == {"netdev": "nic-1", "mac": "52:54:00:00:00:01"}


def test_netdev_args():
    nic = {"uuid": DISK_UUID, "mac": "52:54:00:00:00:01", "hvinfo": {"id": "nic-1"}}
    assert devices.netdev_args({**nic, "network": None}) is None
    assert devices.netdev_args({**nic, "network": {"type": "user"}}, "7") == {"type": "user", "id": "nic-1"}
    tap = {**nic, "network": {"type": "tap", "ifname": "tap0"}}
    assert devices.netdev_args(tap, "nic-1") == {"type": "tap", "id": "nic-1", "fd": "nic-1"}
    with pytest.raises(KvmError, match="a tap needs its descriptor"):
        devices.netdev_args(tap)


def test_public_is_a_copy():
    record = disk()
    shown = devices.public(record)
    assert shown == {"uuid": DISK_UUID, "id": "disk-7c079136", "hvinfo": record["hvinfo"]}
    shown["hvinfo"]["addr"] = "0x11"
    assert record["hvinfo"]["addr"] == "0x10"
