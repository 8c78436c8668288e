"""A new start's runtime: every device placed, the fixed command line recorded, a short hotplug room warned about."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import kvm_cmd
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

INST = "00000000-0000-4000-8000-000000000000"


def test_new_runtime_places_everything_and_records_the_command_line():
    hv = hvparams.normalize({"disk_type": "scsi-hd", "kvm_extra": "-S -device 'virtio-rng-pci,id=rng0'", "pci_hotplug_slots": 2})
    disks = [devices.disk_record({"path": f"/d{i}.img"}, INST) for i in range(2)]
    nics = [devices.nic_record({}, INST, 0)]
    warned: list[str] = []
    rt = construct.new_runtime("vm1", INST, 512, 2, hv, "/usr/bin/qemu-system-x86_64", disks, nics, warn=warned.append)
    assert warned == []
    assert rt["version"] == upgrade.FORMAT_VERSION == 2
    assert (rt["name"], rt["uuid"], rt["memory"], rt["vcpus"]) == ("vm1", INST, 512, 2)
    assert rt["kvm_cmd"] == kvm_cmd.fixed_argv("/usr/bin/qemu-system-x86_64", "vm1", INST, 512, 2, hv)
    assert rt["kvm_extra"] == ["-S", "-device", "virtio-rng-pci,id=rng0"]
    assert rt["hvparams"] == hv and rt["hvparams"] is not hv
    assert [c["hvinfo"]["id"] for c in rt["controllers"]] == ["scsi"]
    assert [d["hvinfo"]["bus"] for d in rt["disks"]] == ["scsi.0", "scsi.0"] and rt["disks"] is disks
    assert rt["nics"][0]["hvinfo"]["addr"] == "0x11"
    assert upgrade.upgrade(rt)[0] == rt  # what a start writes is what the upgrader accepts
    state = construct.bus_state(rt)
    assert state.ids == {"scsi", "disk-" + disks[0]["uuid"][:8], "disk-" + disks[1]["uuid"][:8], rt["nics"][0]["hvinfo"]["id"]}
    assert allocator.describe(state)["scsi"][0]["used"] == [0, 1]


def test_recorded_controllers_are_kept_and_a_short_hotplug_room_is_warned_about():
    hv = hvparams.normalize({"kvm_pci_reservations": 30, "pci_hotplug_slots": 0})
    disks = [devices.disk_record({"path": f"/d{i}.img"}, INST) for i in range(2)]
    first = construct.new_runtime("vm1", INST, 256, 1, hv, "qemu", disks, [])
    assert [d["hvinfo"]["addr"] for d in first["disks"]] == ["0x1e", "0x1f"] and first["controllers"] == []
    wider = {**hv, "pci_hotplug_slots": 3}
    warned: list[str] = []
    again = construct.new_runtime("vm1", INST, 256, 1, wider, "qemu", [dict(d) for d in first["disks"]], [], [], warned.append)
    assert warned == ["only 0 of pci_hotplug_slots=3 PCI devices can be hotplugged: the recorded devices keep their slots "
                      "and no more bridges or ports fit"]
    assert [d["hvinfo"] for d in again["disks"]] == [d["hvinfo"] for d in first["disks"]]
    construct.new_runtime("vm1", INST, 256, 1, wider, "qemu", [dict(d) for d in first["disks"]], [])  # no warn function: no warning
    bridge = {"kind": "pci-bridge", "hvinfo": {"driver": "pci-bridge", "id": "pci.1", "bus": "pci.0", "addr": "0x1f", "chassis_nr": 1}}
    kept = construct.new_runtime("vm1", INST, 256, 1, {**hv, "pci_hotplug_slots": 31}, "qemu",
                                 [devices.disk_record({"path": "/d.img"}, INST)], [], [bridge], warned.append)
    assert kept["controllers"] == [bridge] and kept["disks"][0]["hvinfo"]["addr"] == "0x1e" and len(warned) == 1
