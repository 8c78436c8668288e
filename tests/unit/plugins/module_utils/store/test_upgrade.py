"""The upgrader: legacy layout and version 1 in, version 2 out; newer refused; hostile content refused."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

NIC_UUID = "11111111-2222-4333-8444-555555555555"
DISK0 = "aaaaaaaa-2222-4333-8444-555555555555"
DISK1 = "bbbbbbbb-2222-4333-8444-555555555555"
LEGACY = [
    ["qemu-system-x86_64", "-name", "old1", "-m", "128", "-smp", "2", "-pidfile", "/run/ganeti/old1.pid",
     "-qmp", "unix:/run/ganeti/old1.qmp,server,nowait", "-daemonize", "-machine", "pc,accel=tcg"],
    [{"mac": "52:54:00:00:00:01", "uuid": NIC_UUID, "pci": 18}],
    {"disk_type": "paravirtual", "nic_type": "e1000", "security_model": "none"},
    [[{"uuid": DISK0, "mode": "rw", "pci": 16}, "/srv/old1-0.img", None],
     [{"uuid": DISK1, "mode": "ro", "pci": 17}, "/srv/old1-1.img", "rbd:pool/x"]],
]


def fresh(data):
    return json.loads(json.dumps(data))


def make_runtime(disk_type: str = "paravirtual") -> dict:
    hv = hvparams.normalize({"disk_type": disk_type, "accel": "tcg"})
    inst = devices.derived_uuid("instance", "vm1")
    disks = [devices.disk_record({"path": f"/srv/d{i}.img"}, inst) for i in range(2)]
    nics = [devices.nic_record({}, inst, 0)]
    return dict(construct.new_runtime("vm1", inst, 256, 1, hv, "qemu-system-x86_64", disks, nics))


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
