"""A runtime back in Ganeti's layouts: what reads back the same, what Ganeti's plumbing adds, what is refused."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import export

from .runtimes import LINK0, read, read_data


@pytest.mark.parametrize("name", ["v2_16_drbd_ovs_hvinfo", "v3_1_hotplug_gap", "v2_16_scsi_e1000", "v2_16_upgraded_legacy_ids",
                                  "v3_0_guest_agent_file_disk", "v2_15_resaved_from_2_9", "v2_9_network_netinfo"])
def test_export_layout_3_reads_back_to_the_same_devices(name):
    rt = read(name)
    out = export.export(rt, "3")
    assert len(out) == 4 and export.dumps(out).count("\n") == 1
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
    out = export.export(rt, "2", running=True)
    assert [n["pci"] for n in out[1]] == [5] and [d[0]["pci"] for d in out[3]] == [4] and "hvinfo" not in out[1][0]
    assert out[3][0][0]["dev_type"] == "plain" and out[3][0][1:] == [LINK0, None]
    assert read_data(json.loads(json.dumps(out)))["disks"][0]["hvinfo"] == rt["disks"][0]["hvinfo"]
    with pytest.raises(KvmError, match="would be called hotnic-e2c4a6b8-pci-14 there"):
        export.export(read("v3_0_guest_agent_file_disk"), "2", running=True)
    assert export.export(read("v3_0_guest_agent_file_disk"), "2")[1][0]["pci"] == 0xE  # a stopped instance gets new ids
    with pytest.raises(KvmError, match=r"needs Ganeti 2\.16 or later"):
        export.export(read("v2_16_scsi_e1000"), "2")
    with pytest.raises(KvmError, match="layout '4' is not one of"):
        export.export(rt, "4")


def native(disk_type: str = "paravirtual", **extra) -> dict:
    hv = hvparams.normalize({"disk_type": disk_type, "accel": "tcg", **extra})
    inst = devices.derived_uuid("instance", "web1")
    disks = [devices.disk_record({"path": f"/srv/d{i}.img"}, inst) for i in range(2)]
    nics = [devices.nic_record({"mac": "52:54:00:00:00:01"}, inst)]
    return dict(construct.new_runtime("web1", inst, 256, 1, hv, "qemu-system-x86_64", disks, nics))


def test_export_of_a_native_instance_adds_ganeti_plumbing():
    rt = native()
    out = export.export(rt, "3")
    cmd = out[0]
    assert cmd[1:3] == ["-pidfile", "/var/run/ganeti/kvm-hypervisor/pid/web1"]
    assert "unix:/var/run/ganeti/kvm-hypervisor/ctrl/web1.serial,server,nowait" in cmd and cmd[cmd.index("-m") + 1] == 256
    assert [n["hvinfo"]["addr"] for n in out[1]] == ["0x12"] and out[2]["kvm_pci_reservations"] == 16
    assert [d[1] for d in out[3]] == ["/srv/d0.img", "/srv/d1.img"]
    assert [d[0]["hvinfo"]["id"] for d in out[3]] == [d["hvinfo"]["id"] for d in rt["disks"]]
    rt["kvm_extra"] = ["-device", "virtio-rng-pci"]  # the extras are part of the device tree a Ganeti target starts
    assert export.export(rt, "3")[0][-2:] == ["-device", "virtio-rng-pci"]
    rt["kvm_extra"] = []
    scsi = native("scsi-hd", scsi_controller_type="virtio-scsi-pci")  # its controller is a recorded PCI device
    with pytest.raises(KvmError, match="SCSI controller scsi is a recorded PCI device"):
        export.export(scsi, "3")
    ganeti_scsi = read("v2_16_scsi_e1000")
    assert [d[0]["hvinfo"]["scsi-id"] for d in export.export(ganeti_scsi, "3")[3]] == [0, 1]
    ganeti_scsi["disks"][1]["hvinfo"]["scsi-id"] = 20
    with pytest.raises(KvmError, match="targets 0-15"):
        export.export(ganeti_scsi, "3")
    with pytest.raises(KvmError, match="is part of the running instance's device tree"):
        export.export(rt, "3", running=True)  # the unused bridge would be gone under Ganeti
    qcow = native()
    qcow["disks"][0]["format"] = "qcow2"
    with pytest.raises(KvmError, match="only runs raw disks"):
        export.export(qcow, "3")
