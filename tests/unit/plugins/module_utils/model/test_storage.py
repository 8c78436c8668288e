"""The copy_storage plan both ends derive from one runtime: which disks, what sizes, QMP arguments, the created-images record."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams, storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

INST = devices.derived_uuid("instance", "vm1")


def runtime(*specs: dict) -> dict:
    hv = hvparams.normalize({"accel": "tcg"})
    disks = [devices.disk_record(spec, INST) for spec in specs]
    return dict(construct.new_runtime("vm1", INST, 256, 1, hv, "qemu-system-x86_64", disks, []))


def test_copied_disks_are_the_read_write_files_in_order():
    rt = runtime({"path": "/srv/a.img"}, {"path": "/srv/cd.iso", "mode": "ro"}, {"path": "/srv/b.qcow2", "format": "qcow2"})
    rt["disks"].append({**rt["disks"][0], "uuid": devices.derived_uuid("x"), "path": None, "uri": "iscsi://h/iqn/1",
                        "hvinfo": {**rt["disks"][0]["hvinfo"], "id": "disk-ffffffff", "addr": "0x13"}})
    assert [d["path"] for d in storage.copied_disks(rt)] == ["/srv/a.img", "/srv/b.qcow2"]


def test_disks_under_shared_dirs_are_not_copied():
    rt = runtime({"path": "/srv/local/a.img"}, {"path": "/srv/shared/b.img"}, {"path": "/srv/shared-not/c.img"})
    assert [d["path"] for d in storage.copied_disks(rt, ["/srv/shared/"])] == ["/srv/local/a.img", "/srv/shared-not/c.img"]
    plan = storage.plan_images(rt, {d["uuid"]: 1 << 20 for d in rt["disks"]}, ["/srv/shared", "/srv/shared-not"])
    assert [d["path"] for d, _size in plan] == ["/srv/local/a.img"]
    with pytest.raises(KvmError, match=r"shared_dirs .* must be a list of absolute directory paths"):
        storage.copied_disks(rt, ["srv/shared"])


def test_plan_takes_each_size_by_uuid():
    rt = runtime({"path": "/srv/a.img"}, {"path": "/srv/b.qcow2", "format": "qcow2"})
    sizes = {rt["disks"][0]["uuid"]: 64 << 20, rt["disks"][1]["uuid"]: str(8 << 20), "unrelated": 1}
    plan = storage.plan_images(rt, sizes)
    assert [(d["path"], d["format"], size) for d, size in plan] == [("/srv/a.img", "raw", 64 << 20), ("/srv/b.qcow2", "qcow2", 8 << 20)]


@pytest.mark.parametrize(("size", "message"), [
    (None, "has no virtual size in disk_sizes"),
    (0, "has no virtual size"),
    (-512, "has no virtual size"),
    (True, "has no virtual size"),
    ("12M", "has no virtual size"),
    (1000, "not a multiple of 512"),
])
def test_plan_refuses_a_missing_or_bad_size(size, message):
    rt = runtime({"path": "/srv/a.img"})
    sizes = {} if size is None else {rt["disks"][0]["uuid"]: size}
    with pytest.raises(KvmError, match=message):
        storage.plan_images(rt, sizes)


@pytest.mark.parametrize("path", ["/dev/vg/lv", "/srv/../etc/x.img", "/proc/self/mem"])
def test_plan_only_creates_plain_image_files(path):
    rt = runtime({"path": "/srv/a.img"})
    rt["disks"][0]["path"] = path
    with pytest.raises(KvmError, match="not a plain file path"):
        storage.plan_images(rt, {rt["disks"][0]["uuid"]: 1 << 20})


def test_shortfalls_name_each_filesystem_and_the_numbers():
    needs = {1: ("/srv/kvmhv", 40 << 20), 2: ("/var/lib/vm", 1 << 20)}
    assert storage.shortfalls(needs, {1: 24 << 20, 2: 1 << 30}) == ["/srv/kvmhv has 24.0 MiB free, the copied disks need 40.0 MiB"]
    assert storage.shortfalls(needs, {1: 40 << 20, 2: 1 << 20}) == []


def test_qmp_arguments():
    rt = runtime({"path": "/srv/a.img"})
    disk = storage.copied_disks(rt)[0]
    dev = disk["hvinfo"]["id"]
    assert storage.server_args("10.0.0.2", 49153, 2) == {"addr": {"type": "inet", "data": {"host": "10.0.0.2", "port": "49153"}},
                                                         "max-connections": 2}
    assert storage.server_args("[fd00::2]", 7, 1)["addr"]["data"]["host"] == "fd00::2"
    assert storage.export_args(disk) == {"type": "nbd", "id": dev, "node-name": dev, "name": dev, "writable": True}
    assert storage.client_args(1, disk, "[fd00::2]", 49153) == {
        "driver": "nbd", "node-name": "kvmhv-nbd1", "export": dev, "server": {"type": "inet", "host": "fd00::2", "port": "49153"}}
    assert storage.mirror_args(1, disk) == {"job-id": "kvmhv-mirror1", "device": dev, "target": "kvmhv-nbd1", "sync": "full",
                                            "copy-mode": "write-blocking", "auto-finalize": True, "auto-dismiss": True}


@pytest.mark.parametrize(("records", "message"), [
    ({}, "must be a list"),
    ([{"path": "/srv/a.img", "dev": 1, "ino": 2}], r"must be \{path, dev, ino, token\}"),
    ([{"path": "/srv/a.img", "dev": 1, "ino": 2, "token": None, "extra": 3}], r"must be \{path, dev, ino, token\}"),
    ([{"path": "srv/a.img", "dev": 1, "ino": 2, "token": None}], "absolute, normalised"),
    ([{"path": "/srv/../etc/passwd", "dev": 1, "ino": 2, "token": None}], "absolute, normalised"),
    ([{"path": "/srv/a.img", "dev": "1", "ino": 2, "token": None}], "dev must be"),
    ([{"path": "/srv/a.img", "dev": 1, "ino": True, "token": None}], "ino must be"),
    ([{"path": "/srv/a.img", "dev": 1, "ino": 2, "token": 5}], "token must be"),
])
def test_created_images_record_is_checked_strictly(records, message):
    with pytest.raises(KvmError, match=message):
        storage.check_created(records)
    rt = runtime({"path": "/srv/a.img"})
    rt["created_images"] = records
    with pytest.raises(KvmError, match=message):
        upgrade.validate(rt)


def test_created_images_record_round_trips():
    rt = runtime({"path": "/srv/a.img"})
    rt["mark"] = "incoming"
    records = [{"path": "/srv/a.img", "dev": 64, "ino": 1234, "token": "0a1b2c3d4e5f6a7b"},
               {"path": "/srv/b.img", "dev": 64, "ino": 1235, "token": None}]
    rt["created_images"] = records
    assert upgrade.validate(rt)["created_images"] == records


def test_a_writable_disk_qemu_placed_itself_is_refused_unless_shared():
    rt = {"disks": [], "fixed": [{"kind": "disk", "path": "/srv/ganeti/vm1.img", "mode": "rw"},
                                 {"kind": "disk", "path": "/srv/iso/boot.iso", "mode": "ro"}]}
    with pytest.raises(KvmError, match=r"copy_storage cannot copy /srv/ganeti/vm1.img: a disk QEMU placed itself"):
        storage.copied_disks(rt)
    assert storage.copied_disks(rt, ["/srv/ganeti"]) == []
