"""Runtime files: atomic store, upgrader (legacy layout, newer versions), downgrade export, command line."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as cmdline
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file as runtime
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

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


def make_runtime(disk_type: str = "paravirtual") -> dict:
    hv = hvparams.normalize({"disk_type": disk_type, "accel": "tcg"})
    inst = devices.derived_uuid("instance", "vm1")
    disks = [devices.disk_record({"path": f"/srv/d{i}.img"}, inst) for i in range(2)]
    nics = [devices.nic_record({}, inst, 0)]
    return runtime.new_runtime("vm1", inst, 256, 1, hv, "qemu-system-x86_64", disks, nics)


def test_legacy_pci_slots_become_hvinfo():
    rt, version = upgrade.upgrade(json.loads(json.dumps(LEGACY)))
    assert version == 0 and rt["version"] == upgrade.FORMAT_VERSION
    assert rt["nics"][0]["hvinfo"] == {"driver": "e1000", "id": "hotnic-11111111-pci-18", "bus": "pci.0", "addr": "0x12"}
    assert [d["hvinfo"] for d in rt["disks"]] == [
        {"driver": "virtio-blk-pci", "id": "hotdisk-aaaaaaaa-pci-16", "bus": "pci.0", "addr": "0x10"},
        {"driver": "virtio-blk-pci", "id": "hotdisk-bbbbbbbb-pci-17", "bus": "pci.0", "addr": "0x11"},
    ]
    assert [d["path"] for d in rt["disks"]] == ["/srv/old1-0.img", "/srv/old1-1.img"]
    assert rt["disks"][1]["mode"] == "ro" and rt["disks"][1]["uri"] == "rbd:pool/x"
    assert rt["kvm_cmd"] == ["qemu-system-x86_64", "-name", "old1", "-m", "128", "-smp", "2", "-machine", "pc,accel=tcg"]
    assert rt["legacy_hvparams"] == {"security_model": "none"}
    assert (rt["name"], rt["memory"], rt["vcpus"]) == ("old1", 128, 2)


def test_legacy_with_hvinfo_is_kept_and_scsi_legacy_pci_disk_stays_pci():
    data = json.loads(json.dumps(LEGACY))
    data[2]["disk_type"] = "scsi"
    data[1][0] = {"mac": "52:54:00:00:00:01", "uuid": NIC_UUID,
                  "hvinfo": {"driver": "e1000", "id": "nic-x", "bus": "pci.0", "addr": "0x15"}}
    rt = upgrade.upgrade(data)[0]
    assert rt["nics"][0]["hvinfo"]["id"] == "nic-x"
    assert rt["hvparams"]["disk_type"] == "scsi-hd"
    assert rt["disks"][0]["hvinfo"]["driver"] == "virtio-blk-pci"


def test_current_format_round_trips_unchanged(tmp_path):
    rt = make_runtime("scsi-hd")
    path = tmp_path / "vm1.runtime.json"
    runtime.write_file(str(path), rt)
    loaded, version = runtime.read_file(str(path))
    assert version == 1 and loaded == rt
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["vm1.runtime.json"]


def test_upgrade_leaves_the_callers_data_alone_unless_handed_over():
    stored = json.loads(json.dumps(make_runtime()))
    stored["hvparams"] = {"disk_type": "paravirtual", "accel": "tcg"}  # as an older writer left it: defaults missing
    snapshot = json.dumps(stored, sort_keys=True)
    rt = upgrade.upgrade(stored)[0]
    assert json.dumps(stored, sort_keys=True) == snapshot and rt is not stored
    assert rt["hvparams"]["nic_type"] == "paravirtual"
    owned = upgrade.upgrade(stored, fresh=True)[0]
    assert owned is stored and owned == rt


def test_newer_version_refused_naming_both_and_file_untouched(tmp_path):
    path = tmp_path / "new.runtime.json"
    path.write_text(json.dumps({**make_runtime(), "version": 99}))
    before = path.read_bytes()
    with pytest.raises(KvmError) as err:
        runtime.read_file(str(path))
    assert "version 99" in str(err.value) and "(version 1)" in str(err.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not valid JSON"),
    ("42", "neither a JSON object nor the legacy list layout"),
    ('{"version": "1"}', "no integer format version"),
    ('{"version": 1, "hvparams": {}, "disks": [], "nics": []}', "'kvm_cmd' is missing"),
    ('[[], [], {}]', "legacy runtime must be"),
])
def test_damaged_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.runtime.json"
    path.write_text(content)
    with pytest.raises(KvmError) as err:
        runtime.read_file(str(path))
    assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(KvmError, match="does not exist"):
        runtime.read_file(str(tmp_path / "missing.runtime.json"))


def test_duplicate_address_in_runtime_refused():
    rt = make_runtime()
    rt["nics"][0]["hvinfo"]["addr"] = rt["disks"][0]["hvinfo"]["addr"]
    with pytest.raises(KvmError, match="already taken"):
        upgrade.upgrade(json.loads(json.dumps(rt)))


def test_downgrade_export():
    rt = upgrade.upgrade(json.loads(json.dumps(LEGACY)))[0]
    legacy = upgrade.to_legacy(rt)
    assert [n["pci"] for n in legacy[1]] == [18]
    assert [(d[0]["pci"], d[1]) for d in legacy[3]] == [(16, "/srv/old1-0.img"), (17, "/srv/old1-1.img")]
    assert legacy[2]["security_model"] == "none"
    again = upgrade.upgrade(legacy)[0]
    assert [d["hvinfo"] for d in again["disks"]] == [d["hvinfo"] for d in rt["disks"]]
    with pytest.raises(KvmError) as err:
        upgrade.to_legacy(make_runtime("scsi-hd"))
    assert "sits on scsi.0" in str(err.value)


def test_command_line_order_and_controller():
    rt = make_runtime("scsi-hd")
    rt["kvm_extra"] = ["-S"]
    argv = cmdline.launch_argv(rt, "/r/q", "/r/p", "/r/s,log")
    assert argv[argv.index("-device") + 1] == "lsi53c895a,id=scsi"
    assert argv[-1] == "-S"
    blockdevs = [i for i, a in enumerate(argv) if a == "-blockdev"]
    devs = [i for i, a in enumerate(argv) if a == "-device"]
    assert blockdevs[0] < devs[1] < blockdevs[1] < devs[2]
    assert argv[devs[-1] + 1].startswith("virtio-net-pci,id=nic-")
    assert "file,id=serial0,path=/r/s,,log" in argv
    assert argv.index("-daemonize") < blockdevs[0]
    plain = make_runtime("paravirtual")
    assert not any(a.startswith(("lsi53c895a", "megasas", "virtio-scsi-pci")) for a in plain["kvm_cmd"])


def test_paths_and_names(tmp_path):
    where = runtime.paths(str(tmp_path), "vm-1.a_b")
    assert where.runtime.endswith("vm-1.a_b.runtime.json") and where.qmp.endswith(".qmp")
    for bad in ("", "-x", "a/b", "a b", "x" * 64):
        with pytest.raises(KvmError, match="instance name"):
            runtime.paths(str(tmp_path), bad)
    with pytest.raises(KvmError, match="longer than 107 bytes"):
        runtime.paths("/" + "d" * 100, "vm1")
    (tmp_path / "a.runtime.json").write_text("{}")
    (tmp_path / "b.runtime.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    assert runtime.list_names(str(tmp_path)) == ["a", "b"]


def _hold_lock(directory: str, seconds: float, started) -> None:
    with runtime.locked(runtime.paths(directory, "vm1")):
        started.set()
        time.sleep(seconds)


def test_lock_serialises_writers(tmp_path):
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), 0.5, started))
    holder.start()
    assert started.wait(10)
    begin = time.monotonic()
    with runtime.locked(runtime.paths(str(tmp_path), "vm1")):
        waited = time.monotonic() - begin
    holder.join()
    assert waited >= 0.3


def test_block_for_device_matches_exactly():
    blocks = [{"device": "", "qdev": "/machine/peripheral/disk-abc/virtio-backend"}, {"device": "", "qdev": "disk-ab"}]
    assert qmp.block_for_device(blocks, "disk-abc") is blocks[0]
    assert qmp.block_for_device(blocks, "disk-ab") is blocks[1]
    assert qmp.block_for_device(blocks, "disk-a") is None
    pci = [{"bus": 0, "devices": [{"slot": 16, "function": 0, "qdev_id": "d"}, {"slot": 1, "function": 1, "qdev_id": ""}]}]
    assert qmp.pci_devices(pci) == {16: {"slot": 16, "function": 0, "qdev_id": "d"}}


def test_write_is_atomic_under_failure(tmp_path, monkeypatch):
    path = tmp_path / "vm1.runtime.json"
    runtime.write_file(str(path), {"a": 1})

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        runtime.write_file(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vm1.runtime.json"]
