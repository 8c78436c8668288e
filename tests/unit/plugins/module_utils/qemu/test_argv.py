"""The command line: kvm_cmd, plumbing by descriptors, devices as JSON, extras last."""

from __future__ import annotations

import json

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv

from ....builders import make_runtime


def test_order_descriptors_and_json_devices():
    rt = make_runtime("scsi-hd")
    rt["kvm_extra"] = ["-S"]
    ids = [d["hvinfo"]["id"] for d in rt["disks"]]
    nic = rt["nics"][0]["hvinfo"]["id"]
    fds = argv.HostFds(3, 4, 5, {ids[0]: (6, False), ids[1]: (7, True)}, {})
    cmd = argv.launch_argv(rt, fds)
    devices = [json.loads(cmd[i + 1]) for i, a in enumerate(cmd) if a == "-device"]
    assert [d["driver"] for d in devices[:2]] == ["pci-bridge", "lsi53c895a"]  # buses first, then the SCSI controller
    assert devices[1] == {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0", "addr": "0x10"}
    assert cmd[-1] == "-S"
    assert cmd[cmd.index("-sandbox") + 1] == "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    assert "socket,id=qmp,fd=3,server=on,wait=off" in cmd and "socket,id=qmp-ro,fd=4,server=on,wait=off" in cmd
    assert "fd=5,set=1,opaque=serial" in cmd and "file,id=serial0,path=/dev/fdset/1" in cmd
    assert f"fd=6,set=2,opaque={ids[0]}" in cmd and f"fd=7,set=3,opaque={ids[1]}" in cmd
    blockdevs = [json.loads(cmd[i + 1]) for i, a in enumerate(cmd) if a == "-blockdev"]
    assert [b["file"] for b in blockdevs] == [{"driver": "file", "filename": "/dev/fdset/2", "read-only": False},
                                              {"driver": "host_device", "filename": "/dev/fdset/3", "read-only": False}]
    devices = devices[2:]
    assert [d["id"] for d in devices] == [*ids, nic]
    assert devices[0] == {**rt["disks"][0]["hvinfo"], "drive": ids[0]} and isinstance(devices[0]["scsi-id"], int)
    assert "-daemonize" not in cmd and "-pidfile" not in cmd
    assert not any("/" in a and a.startswith("/") and "fdset" not in a for a in cmd[len(rt["kvm_cmd"]):])  # no host path reaches QEMU


def test_tap_nics_get_their_descriptor_and_incoming_defers():
    rt = make_runtime()
    rt["nics"][0]["network"] = {"type": "tap", "ifname": "tap0", "bridge": "br0"}
    nic = rt["nics"][0]["hvinfo"]["id"]
    fds = argv.HostFds(3, 4, 5, {d["hvinfo"]["id"]: (6 + i, False) for i, d in enumerate(rt["disks"])}, {nic: 9})
    cmd = argv.launch_argv(rt, fds, incoming=True)
    netdev = json.loads(cmd[cmd.index("-netdev") + 1])
    assert netdev == {"type": "tap", "id": nic, "fd": "9"}
    assert cmd[cmd.index("-incoming") + 1] == "defer"
    assert sorted(fds.all()) == [3, 4, 5, 6, 7, 9]


def test_controllers_buses_first_then_scsi_each_in_recorded_order():
    rt = {"controllers": [
        {"kind": "scsi", "hvinfo": {"driver": "megasas", "id": "scsi", "bus": "pci.0", "addr": "0x10"}},
        {"kind": "pci-bridge", "hvinfo": {"driver": "pci-bridge", "id": "pci.2", "bus": "pci.0", "addr": "0x1e", "chassis_nr": 2}},
        {"kind": "scsi", "hvinfo": {"driver": "megasas", "id": "scsi1", "bus": "pci.2", "addr": "0x1"}},
        {"kind": "pci-bridge", "hvinfo": {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f", "chassis_nr": 1}},
    ]}
    cmd = argv.controller_argv(rt)  # type: ignore[arg-type]
    assert cmd[::2] == ["-device"] * 4
    assert [json.loads(a)["id"] for a in cmd[1::2]] == ["pci.2", "pci.1", "scsi", "scsi1"]
    assert argv.controller_argv({}) == []  # type: ignore[typeddict-item]


def test_network_disks_empty_drives_and_unlinked_nics():
    rt = make_runtime("scsi-hd")
    rt["disks"][0].update(path=None, uri="iscsi://t.example/iqn.2026-01.x:t/3", type="scsi-block")
    rt["disks"][0]["hvinfo"]["driver"] = "scsi-block"
    rt["disks"][1].update(path=None, type="scsi-cd", mode="ro")
    rt["disks"][1]["hvinfo"]["driver"] = "scsi-cd"
    rt["nics"][0]["network"] = None
    cmd = argv.device_argv(rt, argv.HostFds(3, 4, 5))
    assert "-add-fd" not in cmd and "-netdev" not in cmd
    assert [json.loads(cmd[i + 1]) for i, a in enumerate(cmd) if a == "-blockdev"] == [{
        "driver": "iscsi", "transport": "tcp", "portal": "t.example:3260", "target": "iqn.2026-01.x:t", "lun": 3,
        "node-name": rt["disks"][0]["hvinfo"]["id"], "read-only": False}]
    devices = [json.loads(cmd[i + 1]) for i, a in enumerate(cmd) if a == "-device"]
    assert devices[0]["drive"] == rt["disks"][0]["hvinfo"]["id"] and "drive" not in devices[1]
    assert devices[2] == {**rt["nics"][0]["hvinfo"], "mac": rt["nics"][0]["mac"]}


def test_fdsets_count_only_host_files():
    rt = make_runtime()
    rt["disks"].insert(0, {**rt["disks"][0], "path": None, "uri": "nbd://h/e",
                           "hvinfo": {**rt["disks"][0]["hvinfo"], "id": "disk-net", "addr": "0x1d"}})
    ids = [d["hvinfo"]["id"] for d in rt["disks"]]
    cmd = argv.device_argv(rt, argv.HostFds(3, 4, 5, {ids[1]: (20, False), ids[2]: (21, False)}, {}))
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-add-fd"] == [f"fd=20,set=2,opaque={ids[1]}", f"fd=21,set=3,opaque={ids[2]}"]
    assert argv.plumbing_argv(argv.HostFds(3, 4, 5))[-2:] == ["-serial", "chardev:serial0"]
    assert argv.plumbing_argv(argv.HostFds(3, 4, 5), incoming=True)[-2:] == ["-incoming", "defer"]
