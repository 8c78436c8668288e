"""The upgrader: legacy layout and version 1 in, version 2 out; newer refused; hostile content refused."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

from ....builders import DISK0, LEGACY, NIC_UUID, make_runtime


def fresh(data):
    return json.loads(json.dumps(data))


def test_legacy_pci_slots_become_hvinfo():
    rt, version = upgrade.upgrade(fresh(LEGACY))
    assert version == 0 and rt["version"] == upgrade.FORMAT_VERSION == 2
    assert rt["nics"][0]["hvinfo"] == {"driver": "e1000", "id": "hotnic-11111111-pci-18", "bus": "pci.0", "addr": "0x12"}
    assert [d["hvinfo"] for d in rt["disks"]] == [
        {"driver": "virtio-blk-pci", "id": "hotdisk-aaaaaaaa-pci-16", "bus": "pci.0", "addr": "0x10"},
        {"driver": "virtio-blk-pci", "id": "hotdisk-bbbbbbbb-pci-17", "bus": "pci.0", "addr": "0x11"},
    ]
    assert [d["path"] for d in rt["disks"]] == ["/srv/old1-0.img", "/srv/old1-1.img"]
    assert rt["disks"][1]["mode"] == "ro" and rt["disks"][1]["uri"] == "rbd:pool/x"
    # host plumbing dropped; -net none keeps QEMU's default NIC away (Ganeti adds it per start)
    assert rt["kvm_cmd"] == ["qemu-system-x86_64", "-name", "old1", "-m", "128", "-smp", "2", "-machine", "pc,accel=tcg", "-net", "none"]
    assert rt["legacy_hvparams"] == {"security_model": "none"}
    assert (rt["name"], rt["memory"], rt["vcpus"]) == ("old1", 128, 2)


def test_legacy_with_hvinfo_is_kept_and_scsi_legacy_pci_disk_stays_pci():
    data = fresh(LEGACY)
    data[2]["disk_type"] = "scsi"
    data[1][0] = {"mac": "52:54:00:00:00:01", "uuid": NIC_UUID,
                  "hvinfo": {"driver": "e1000", "id": "nic-x", "bus": "pci.0", "addr": "0x15"}}
    rt = upgrade.upgrade(data)[0]
    assert rt["nics"][0]["hvinfo"]["id"] == "nic-x"
    assert rt["hvparams"]["disk_type"] == "scsi-hd"
    assert rt["disks"][0]["hvinfo"]["driver"] == "virtio-blk-pci"


def test_version_1_stopped_becomes_a_mark_and_current_round_trips():
    v1 = fresh(make_runtime())
    v1["version"] = 1
    v1["stopped"] = True
    rt, version = upgrade.upgrade(fresh(v1))
    assert version == 1 and rt["version"] == 2 and rt["mark"] == "stopped" and "stopped" not in rt
    again, version = upgrade.upgrade(fresh(rt))
    assert version == 2 and again == rt


def test_upgrade_leaves_the_callers_data_alone_unless_handed_over():
    stored = fresh(make_runtime())
    stored["hvparams"] = {"disk_type": "paravirtual", "accel": "tcg"}  # as an older writer left it: defaults missing
    snapshot = json.dumps(stored, sort_keys=True)
    rt = upgrade.upgrade(stored)[0]
    assert json.dumps(stored, sort_keys=True) == snapshot and rt is not stored
    assert rt["hvparams"]["nic_type"] == "paravirtual"
    owned = upgrade.upgrade(stored, fresh=True)[0]
    assert owned is stored and owned == rt


def test_newer_version_refused_naming_both():
    with pytest.raises(KvmError) as err:
        upgrade.upgrade({**make_runtime(), "version": 99})
    assert "version 99" in str(err.value) and "(version 2)" in str(err.value)


@pytest.mark.parametrize("data,message", [
    (42, "neither a JSON object nor the legacy list layout"),
    ({"version": "1"}, "no integer format version"),
    ({"version": 1, "hvparams": {}, "disks": [], "nics": []}, "'kvm_cmd' is missing"),
    ([[], {}], "legacy runtime must be"),
    ([[], [], {}], "kvm_cmd is empty"),
    ({"version": 0}, "version 0 is unknown"),
])
def test_damaged_content_is_a_clear_error(data, message):
    with pytest.raises(KvmError, match=message):
        upgrade.upgrade(data)


@pytest.mark.parametrize("mutate,message", [
    (lambda rt: rt["disks"][0]["hvinfo"].update({"serial": "KEYINJ", "bootindex": 1}), "unknown key(s)"),
    (lambda rt: rt["disks"][0]["hvinfo"].update({"driver": "virtio-blk-pci,serial=x"}), "not a driver"),
    (lambda rt: rt["disks"][0]["hvinfo"].update({"addr": "0x40"}), "must be a PCI address"),
    (lambda rt: rt["nics"][0]["hvinfo"].update({"driver": "scsi-hd"}), "does not belong here"),
    (lambda rt: rt["nics"][0].update({"mac": "52:54:00:00:00:01,id=x"}), "is not a MAC address"),
    (lambda rt: rt["nics"][0].update({"network": {"type": "tap", "ifname": "a,b"}}), "is not an interface name"),
    (lambda rt: rt["disks"][0].update({"path": "relative.img"}), "must be an absolute path"),
    (lambda rt: rt["disks"][0].update({"format": "vmdk"}), "format 'vmdk'"),
    (lambda rt: rt["kvm_cmd"].append(7), "must be a list of strings"),
    (lambda rt: rt.update({"mark": "running"}), "mark 'running'"),
    (lambda rt: rt["hvparams"].update({"cpu_type": "qemu64,model-id=PWNED"}), "cpu_type"),
    (lambda rt: rt["disks"][1]["hvinfo"].update({"addr": rt["disks"][0]["hvinfo"]["addr"]}), "already taken"),
])
def test_hostile_or_damaged_records_are_refused(mutate, message):
    rt = fresh(make_runtime())
    mutate(rt)
    with pytest.raises(KvmError) as err:
        upgrade.upgrade(rt)
    assert message in str(err.value)


def test_downgrade_export():
    rt = upgrade.upgrade(fresh(LEGACY))[0]
    legacy = upgrade.to_legacy(rt)
    assert [n["pci"] for n in legacy[1]] == [18]
    assert [(d[0]["pci"], d[1]) for d in legacy[3]] == [(16, "/srv/old1-0.img"), (17, "/srv/old1-1.img")]
    assert legacy[2]["security_model"] == "none"
    again = upgrade.upgrade(legacy)[0]
    assert [d["hvinfo"] for d in again["disks"]] == [d["hvinfo"] for d in rt["disks"]]
    with pytest.raises(KvmError) as err:
        upgrade.to_legacy(upgrade.upgrade(make_runtime("scsi-hd"))[0])
    assert "SCSI controller scsi is a recorded PCI device" in str(err.value) and "sits on scsi.0" in str(err.value)
    # an unused bridge only gave hotplug room: dropped
    plain = upgrade.upgrade(make_runtime())[0]
    assert [c["kind"] for c in plain["controllers"]] == ["pci-bridge"]
    assert [n["pci"] for n in upgrade.to_legacy(plain)[1]] == [0x12]


def test_export_to_version_1_when_the_topology_fits():
    v1 = fresh(make_runtime())
    v1.update(version=1, stopped=True)
    v1.pop("controllers")
    for disk in v1["disks"]:
        disk.pop("type")
    v1["hvparams"].pop("pci_hotplug_slots")
    scsi_v1 = fresh(v1)
    scsi_v1["kvm_cmd"] += ["-device", "lsi53c895a,id=scsi"]
    scsi_v1["hvparams"]["disk_type"] = "scsi-hd"
    for pos, disk in enumerate(scsi_v1["disks"]):
        disk["hvinfo"] = {"driver": "scsi-hd", "id": disk["hvinfo"]["id"], "bus": "scsi.0", "channel": 0, "scsi-id": pos, "lun": 0}
    for original in (v1, scsi_v1):
        current = upgrade.upgrade(fresh(original))[0]
        assert upgrade.to_v1(current) == original  # a round trip back to what version 1 wrote
    q35 = upgrade.upgrade(make_runtime())[0]
    q35["hvparams"]["machine_type"] = "q35"
    q35["disks"][0]["type"] = "scsi-cd"
    with pytest.raises(KvmError) as err:
        upgrade.to_v1(q35)
    assert "the machine is q35" in str(err.value) and "is scsi-cd" in str(err.value)


def scsi_version_1(extra_device: str = "lsi53c895a,id=scsi") -> dict:
    v1 = fresh(make_runtime("scsi-hd"))
    v1.update(version=1)
    v1["controllers"] = []
    v1.pop("controllers")
    v1["kvm_cmd"] += ["-device", extra_device, "-S"]
    for disk in v1["disks"]:
        disk.pop("type")
    return v1


def test_version_1_scsi_controller_moves_to_the_controllers_unaddressed():
    v1 = scsi_version_1()
    rt, version = upgrade.upgrade(v1)
    assert version == 1 and "mark" not in rt and "stopped" not in rt
    assert rt["controllers"] == [{"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi", "bus": "pci.0"}}]
    assert rt["kvm_cmd"] == [*v1["kvm_cmd"][:-3], "-S"]  # exactly the -device pair left the command line
    assert [d["type"] for d in rt["disks"]] == ["scsi-hd", "scsi-hd"]
    megasas = upgrade.upgrade(scsi_version_1("megasas,id=scsi"))[0]
    assert megasas["controllers"][0]["hvinfo"]["driver"] == "megasas"


def test_version_1_disk_types_follow_their_drivers():
    v1 = fresh(make_runtime())
    v1.update(version=1)
    v1.pop("controllers")
    v1["disks"][1]["hvinfo"] = {"driver": "ide-hd", "id": v1["disks"][1]["hvinfo"]["id"], "bus": "ide.0", "unit": 1}
    for disk in v1["disks"]:
        disk.pop("type")
    rt = upgrade.upgrade(v1)[0]
    assert [d["type"] for d in rt["disks"]] == ["paravirtual", "ide"]
    assert rt["controllers"] == []  # nothing in kvm_cmd to move; the unused bridge of the fixture was dropped with the key


@pytest.mark.parametrize("device", ["lsi53c895a,id=scsi,addr=0x3", "lsi53c895a,id=scsi1", "virtio-blk-pci,id=scsi"])
def test_a_version_1_controller_that_is_not_the_collections_own_stays_on_the_command_line(device):
    v1 = scsi_version_1(device)
    with pytest.raises(KvmError, match=r"sits on bus scsi\.0, which no recorded controller provides"):
        upgrade.upgrade(v1)


def test_version_3_is_newer_not_unknown():
    with pytest.raises(KvmError, match=r"version 3 is newer than this collection understands \(version 2\)"):
        upgrade.upgrade({**make_runtime(), "version": 3})
    for version in (-1, True, 2.0, None):
        with pytest.raises(KvmError, match=r"unknown|no integer format version"):
            upgrade.upgrade({**make_runtime(), "version": version})


@pytest.mark.parametrize("mutate,message", [
    (lambda rt: rt["controllers"].clear(), "sits on bus scsi.0, which no recorded controller provides"),
    (lambda rt: rt["controllers"].pop(0), "sits on bus pci.1, which no recorded controller provides"),
    (lambda rt: rt["controllers"][0].update({"note": "x"}), "runtime controller 0 must be {kind: scsi|pci-bridge|pcie-root-port, hvinfo}"),
    (lambda rt: rt["controllers"][0].update({"kind": "scsi"}), "does not belong here"),
    (lambda rt: rt["controllers"][2].update({"kind": "pci-bridge"}), "does not belong here"),
    (lambda rt: rt.update({"controllers": {}}), "'controllers' must be a list"),
    (lambda rt: rt["disks"][0].update({"type": "scsi-cd"}), "type 'scsi-cd' does not match driver scsi-hd"),
    (lambda rt: rt["disks"][0].update({"uuid": "x"}), "runtime disk 0 uuid 'x' is not a UUID"),
    (lambda rt: rt["disks"][0].update({"mode": "rx"}), "mode 'rx'"),
    (lambda rt: rt["disks"][0].update({"uri": 5}), "uri must be a string"),
    (lambda rt: rt["disks"][0].update({"path": "/a\x00b"}), "must be an absolute path"),
    (lambda rt: rt["disks"].append("x"), "runtime disk 2 must be a mapping"),
    (lambda rt: rt["nics"][0]["hvinfo"].update({"bus": "pci.7"}), "sits on bus pci.7"),
    (lambda rt: rt["kvm_extra"].append("-x\x00"), "'kvm_extra' must be a list of strings"),
    (lambda rt: rt.pop("nics"), "'nics' is missing or not a list"),
    (lambda rt: rt.update({"hvparams": []}), "'hvparams' is missing or not a dict"),
])
def test_validate_refuses_damaged_topologies(mutate, message):
    hv = {"disk_type": "scsi-hd", "pci_hotplug_slots": 40}
    rt = fresh(construct.new_runtime("vm1", devices.derived_uuid("instance", "vm1"), 256, 1, hvparams.normalize(hv), "qemu",
                                     [devices.disk_record({"path": f"/d{i}.img"}, "x") for i in range(2)],
                                     [devices.nic_record({}, "x", i) for i in range(16)]))
    assert [c["kind"] for c in rt["controllers"]] == ["pci-bridge", "pci-bridge", "scsi"]
    assert rt["nics"][-1]["hvinfo"]["bus"] == "pci.1"
    upgrade.upgrade(fresh(rt))  # the undamaged one passes
    mutate(rt)
    with pytest.raises(KvmError) as err:
        upgrade.upgrade(rt)
    assert message in str(err.value)


def test_validate_fills_defaults_and_accepts_ide_buses():
    rt = fresh(make_runtime())
    del rt["kvm_extra"]
    rt["disks"][0].pop("format")
    rt["disks"][0].pop("mode")
    rt["disks"][1]["hvinfo"] = {"driver": "ide-hd", "id": rt["disks"][1]["hvinfo"]["id"], "bus": "ide.1", "unit": 0}
    rt["disks"][1]["type"] = "ide"
    rt["hvparams"] = {"accel": "tcg"}
    out = upgrade.upgrade(rt)[0]
    assert out["kvm_extra"] == [] and (out["disks"][0]["format"], out["disks"][0]["mode"]) == ("raw", "rw")
    assert out["hvparams"] == hvparams.normalize({"accel": "tcg"})


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d[3].append([{"uuid": DISK0}, "/x"]), "disk 2 is not [disk, link, uri]"),
    (lambda d: d[3].append([{"uuid": DISK0}, None, None]), "disk 2 has neither a link nor a uri"),
    (lambda d: d[1].append({"uuid": NIC_UUID}), "nic 1 must be a mapping with a MAC address"),
    (lambda d: d[1][0].update({"pci": True}), "nic 0: pci True is not a slot number 0-31"),
    (lambda d: d[1][0].update({"pci": 32}), "nic 0: pci 32 is not a slot number 0-31"),
    (lambda d: d[3][0][0].update({"uuid": "x"}), "disk 0 uuid 'x' is not a UUID"),
    (lambda d: d[2].update({"disk_type": "floppy"}), "disk_type='floppy'"),
    (lambda d: d[1][0].update({"pci": 16}), "already taken"),
])
def test_damaged_legacy_layouts(mutate, message):
    data = fresh(LEGACY)
    mutate(data)
    with pytest.raises(KvmError) as err:
        upgrade.upgrade(data)
    assert message in str(err.value)


def test_a_legacy_nic_without_an_address_is_fixed():
    """Neither hvinfo nor pci: QEMU placed it (Ganeti before 2.10), so it is kept in order, not hotpluggable."""
    data = fresh(LEGACY)
    data[1][0].pop("pci")
    rt = upgrade.upgrade(data)[0]
    assert rt["nics"] == [] and [(f["kind"], f["mac"], f["driver"]) for f in rt["fixed"]] == [("nic", "52:54:00:00:00:01", "e1000")]


def test_legacy_command_line_values():
    data = fresh(LEGACY)
    data[0] = ["kvm", "-name", "old2,debug-threads=on", "-uuid", DISK0, "-m", "512M", "-smp", "4,sockets=1", "-incoming", "tcp:x:1",
               "-monitor", "unix:/m,server", "-serial", "pty", "-daemonize", "-vga", "std"]
    data[2] = {"disk_type": "paravirtual", "nic_type": "e1000", "kernel_path": "", "cdrom_image_path": None}
    rt = upgrade.upgrade(data)[0]
    assert (rt["name"], rt["uuid"], rt["memory"], rt["vcpus"]) == ("old2", DISK0, 512, 4)
    # host plumbing (-incoming, -monitor, -serial pty, -daemonize) dropped; -net none keeps QEMU's default NIC away
    assert rt["kvm_cmd"] == ["kvm", "-name", "old2,debug-threads=on", "-uuid", DISK0, "-m", "512M", "-smp", "4,sockets=1", "-vga", "std",
                             "-net", "none"]
    # a value normalize() changes ('' -> None) is kept aside too, so an export gives Ganeti its own value back
    assert rt["legacy_hvparams"] == {"kernel_path": "", "cdrom_image_path": None} and rt["hvparams"]["kernel_path"] is None
    data[0] = ["kvm", "-m"]
    bare = upgrade.upgrade(data)[0]
    assert (bare["name"], bare["uuid"], bare["memory"], bare["vcpus"]) == (None, None, None, None)


def test_to_legacy_appends_the_extras_and_refuses_other_buses():
    rt = upgrade.upgrade(fresh(LEGACY))[0]
    rt["kvm_extra"] = ["-S"]
    assert upgrade.to_legacy(rt)[0][-1] == "-S"
    rt["nics"][0]["hvinfo"]["bus"] = "pci.1"
    bridge = {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f", "chassis_nr": 1}
    rt["controllers"] = [{"kind": "pci-bridge", "hvinfo": bridge}]
    with pytest.raises(KvmError) as err:
        upgrade.to_legacy(rt)
    assert "devices sit on pci-bridge pci.1" in str(err.value) and "nic hotnic-11111111-pci-18 sits on pci.1" in str(err.value)


def test_to_v1_refuses_network_disks_and_recorded_scsi_controllers():
    rt = upgrade.upgrade(make_runtime("scsi-hd"))[0]
    rt["disks"][0]["path"] = None
    rt["disks"][0]["uri"] = "nbd://h/e"
    with pytest.raises(KvmError) as err:
        upgrade.to_v1(rt)
    assert "has no path" in str(err.value) and "SCSI controller scsi is a recorded PCI device" in str(err.value)
    plain = upgrade.upgrade(make_runtime())[0]
    v1 = upgrade.to_v1(plain)
    assert v1["version"] == 1 and "controllers" not in v1 and "pci_hotplug_slots" not in v1["hvparams"]
    assert "mark" not in v1 and "stopped" not in v1 and all("type" not in d and "uri" not in d for d in v1["disks"])
    assert plain["controllers"] and "pci_hotplug_slots" in plain["hvparams"]  # the export is a copy


@pytest.mark.parametrize("mutate", [lambda rt: rt["nics"][0].update(mac=rt["nics"][0]["mac"] + "\n"),
                                    lambda rt: rt["disks"][0].update(uuid=rt["disks"][0]["uuid"] + "\n")], ids=["mac", "uuid"])
def test_a_trailing_newline_in_a_stored_value_is_refused(mutate):
    rt = fresh(make_runtime())
    mutate(rt)
    with pytest.raises(KvmError):
        upgrade.upgrade(rt)
