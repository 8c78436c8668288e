"""A scsi-cd's medium changed, inserted or ejected live, against the fake QEMU."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import media
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp

from ....builders import disk, images, load_runtime, runtime
from ....fakes.qemu import FakeQemu, in_order


def with_cd(fake: FakeQemu, tmp_path) -> dict[str, Any]:
    rt = runtime([disk(1, images(tmp_path, 1, 2), type="scsi-cd")], [])
    load_runtime(fake, rt)
    return rt


def change(fake: FakeQemu, rt: dict[str, Any], want: dict[str, Any]) -> None:
    asyncio.run(media.change(qmp.Monitor(fake), rt["disks"][0], want, rt["hvparams"]))


# QEMU's tray protocol: a medium leaves and enters only through an open tray, and the tray closes last
TRAY = ("blockdev-open-tray disk-00000001", "blockdev-remove-medium disk-00000001", "blockdev-insert-medium disk-00000001",
        "blockdev-close-tray disk-00000001")


def live(fake: FakeQemu) -> bool:
    """The drive stayed plugged: the medium changed in its tray, no device was unplugged or added."""
    return not any(c.startswith(("device_del", "device_add")) for c in fake.changes())


def held_file(fake: FakeQemu, dev_id: str) -> os.stat_result:
    node = fake.nodes[fake.devices[dev_id]["drive"]]
    return os.fstat(fake.fdsets[int(node["file"].rsplit("/", 1)[1])][0]["fd"])


def test_a_new_medium_replaces_the_old_one_in_one_burst(fake, tmp_path):
    rt = with_cd(fake, tmp_path)
    old_set = list(fake.fdsets)
    change(fake, rt, {"path": str(tmp_path / "d2.img")})
    assert in_order(fake.changes(), *TRAY) and live(fake)
    assert fake.sent("blockdev-open-tray") == [{"id": "disk-00000001", "force": True}]  # a guest that locked the tray cannot stop it
    assert old_set[0] not in fake.fdsets  # the old medium's descriptor is gone
    assert os.path.samestat(held_file(fake, "disk-00000001"), os.stat(tmp_path / "d2.img"))
    assert fake.nodes["disk-00000001"]["args"]["read-only"] is True and fake.devices["disk-00000001"]["tray_open"] is False
    assert [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-00000001"]


def test_eject_and_insert(fake, tmp_path):
    rt = with_cd(fake, tmp_path)
    change(fake, rt, {"path": None})
    assert in_order(fake.changes(), TRAY[0], TRAY[1], TRAY[3]) and "blockdev-insert-medium" not in fake.commands() and live(fake)
    assert fake.devices["disk-00000001"]["drive"] is None and fake.devices["disk-00000001"]["tray_open"] is False
    assert fake.nodes == {} and fake.fdsets == {}
    fake.log.clear()
    empty = {**rt["disks"][0], "path": None}
    asyncio.run(media.change(qmp.Monitor(fake), empty, {"path": str(tmp_path / "d2.img"), "format": "raw"}, rt["hvparams"]))
    assert in_order(fake.changes(), TRAY[0], *TRAY[2:]) and "blockdev-remove-medium" not in fake.commands() and live(fake)
    assert os.path.samestat(held_file(fake, "disk-00000001"), os.stat(tmp_path / "d2.img"))
    assert fake.devices["disk-00000001"]["tray_open"] is False and [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-00000001"]


def test_a_refused_step_names_media_and_drops_the_new_descriptor(fake, tmp_path):
    rt = with_cd(fake, tmp_path)
    fake.refuse["blockdev-open-tray"] = ("GenericError", "Device is not a removable media device")
    with pytest.raises(KvmError) as err:
        change(fake, rt, {"path": str(tmp_path / "d2.img")})
    assert not isinstance(err.value, media.MediumLost)  # the old medium is still in
    assert str(err.value) == "media: QEMU refused blockdev-open-tray: Device is not a removable media device"
    assert [fd["opaque"] for fds in fake.fdsets.values() for fd in fds] == ["disk-00000001"]  # only the old medium's
    fake.refuse.clear()
    fake.refuse["add-fd"] = ("GenericError", "no more sets")
    with pytest.raises(KvmError, match=r"^media: QEMU refused add-fd: no more sets$"):
        change(fake, rt, {"path": str(tmp_path / "d2.img")})
    with pytest.raises(KvmError, match="No such file or directory"):
        change(fake, rt, {"path": str(tmp_path / "nothing.iso")})


@pytest.mark.parametrize("refused", ["blockdev-insert-medium", "blockdev-close-tray"])
def test_a_failed_insert_leaves_nothing_that_blocks_the_next_change(fake, tmp_path, refused):
    rt = with_cd(fake, tmp_path)
    fake.refuse[refused] = ("GenericError", "Tray is locked")
    with pytest.raises(media.MediumLost, match="the drive disk-00000001 is empty now"):
        change(fake, rt, {"path": str(tmp_path / "d2.img")})
    assert fake.nodes == {} and fake.fdsets == {}  # the new node and descriptor are gone with the old ones
    assert media.emptied(rt, rt["disks"][0])["disks"][0]["path"] is None  # what the callers then record
    fake.refuse.clear()
    change(fake, {**rt, "disks": [{**rt["disks"][0], "path": None}]}, {"path": str(tmp_path / "d2.img")})
    assert os.path.samestat(held_file(fake, "disk-00000001"), os.stat(tmp_path / "d2.img"))


def test_a_uri_medium_is_a_node_qemu_reaches_itself(fake, tmp_path):
    rt = with_cd(fake, tmp_path)
    change(fake, rt, {"path": None, "uri": "nbd://[fd00::2]:10900/cd"})
    assert in_order(fake.changes(), *TRAY) and live(fake)
    assert fake.nodes["disk-00000001"]["args"] == {"driver": "nbd", "server": {"type": "inet", "host": "fd00::2", "port": "10900"},
                                                   "export": "cd", "node-name": "disk-00000001", "read-only": True}
    assert fake.devices["disk-00000001"]["drive"] == "disk-00000001" and fake.devices["disk-00000001"]["tray_open"] is False
    assert fake.fdsets == {}  # no descriptor: the old one went with its medium
