"""The hotplug journal: written before QEMU is touched, read back strictly, cleared after."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import journal
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

DISK = {"uuid": "aaaaaaaa-2222-4333-8444-555555555555", "path": "/srv/a.img", "format": "raw", "mode": "rw", "type": "scsi-hd",
        "hvinfo": {"lun": 0, "scsi-id": 2, "channel": 0, "bus": "scsi1.0", "id": "disk-aaaaaaaa", "driver": "scsi-hd"}}
CONTROLLER = {"kind": "scsi", "hvinfo": {"driver": "lsi53c895a", "id": "scsi1", "bus": "pci.0", "addr": "0x11"}}
NIC = {"uuid": "bbbbbbbb-2222-4333-8444-555555555555", "mac": "52:54:00:00:00:01", "network": {"type": "user"},
       "hvinfo": {"driver": "virtio-net-pci", "id": "nic-bbbbbbbb", "bus": "pci.1", "addr": "0x1"}}


@pytest.fixture
def rd(tmp_path):
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened:
        yield opened


def test_round_trip_in_burst_order(rd):
    where = paths(rd.path, "vm1")
    assert journal.read(rd, where) == []
    entries = [("controllers", CONTROLLER), ("disks", DISK), ("nics", NIC)]
    journal.write(rd, where, entries)
    assert rd.listdir() == ["vm1.pending.json"]
    back = journal.read(rd, where)
    assert [kind for kind, _rec in back] == ["controllers", "disks", "nics"]
    assert [rec for _kind, rec in back] == [CONTROLLER, DISK, NIC]
    assert list(back[1][1]["hvinfo"]) == ["driver", "id", "bus", "channel", "scsi-id", "lun"]  # validated: key order restored
    journal.clear(rd, where)
    assert rd.listdir() == [] and journal.read(rd, where) == []
    journal.clear(rd, where)  # clearing twice is fine


@pytest.mark.parametrize("text,reason", [
    ("{ nope", "Expecting property name"),
    ("5", "not iterable"),
    ("null", "not iterable"),
    ('{"kind": "disks"}', "string indices"),
    ('[{"kind": "disks"}]', "'record'"),
    ('[{"kind": "cdroms", "record": {}}]', "(cdroms)"),
    ('[{"kind": "disks", "record": []}]', "(disks)"),
    (json.dumps([{"kind": "controllers", "record": {**CONTROLLER, "kind": "pci-bridge"}}]), "only SCSI controllers are hot-added"),
])
def test_damaged_journals_name_the_file_and_the_way_out(rd, text, reason):
    where = paths(rd.path, "vm1")
    rd.write_atomic("vm1.pending.json", text)
    with pytest.raises(KvmError) as err:
        journal.read(rd, where)
    message = str(err.value)
    assert message.startswith(f"hotplug journal {where.journal} is damaged (") and reason in message
    assert message.endswith("check QEMU with kvm_instance_info, then remove it")


@pytest.mark.parametrize("kind,record", [
    ("nics", DISK),  # a SCSI disk where only PCI NICs belong
    ("controllers", {**CONTROLLER, "hvinfo": {**CONTROLLER["hvinfo"], "driver": "virtio-blk-pci"}}),
    ("disks", {**DISK, "hvinfo": {**DISK["hvinfo"], "scsi-id": 300}}),
])
def test_records_are_validated_like_the_runtime(rd, kind, record):
    where = paths(rd.path, "vm1")
    journal.write(rd, where, [(kind, record)])
    with pytest.raises(KvmError, match="journal"):
        journal.read(rd, where)


@pytest.mark.parametrize("hvinfo", [None, {**DISK["hvinfo"], "serial": "x"}])
def test_a_bad_hvinfo_is_reported_as_a_damaged_journal(rd, hvinfo):
    where = paths(rd.path, "vm1")
    journal.write(rd, where, [("disks", {**DISK, "hvinfo": hvinfo})])
    with pytest.raises(KvmError, match=r"hotplug journal .* is damaged"):
        journal.read(rd, where)
