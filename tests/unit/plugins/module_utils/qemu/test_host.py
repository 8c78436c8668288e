"""What the module opens for QEMU: disks by their mode and type, and everything a start needs, all or nothing."""

from __future__ import annotations

import fcntl
import os
import stat
from typing import Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.argv import HostFds
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

from ....builders import make_runtime

HV = hvparams.normalize({})


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def open_fds() -> set[int]:
    """The descriptors open in this process (probed one by one: listing /proc/self/fd would open one more)."""
    return {fd for fd in range(4096) if is_open(fd)}


@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "a.img"
    path.write_bytes(b"\0" * 512)
    return str(path)


def a_block_device() -> str:
    for entry in sorted(os.scandir("/dev"), key=lambda e: e.name):
        if stat.S_ISBLK(entry.stat(follow_symlinks=False).st_mode):
            return entry.path
    pytest.skip("this machine has no block device node in /dev")


def opened(disk: dict, hv: dict | None = None) -> tuple[int, bool, int]:
    fd, block = host.open_disk(disk, HV if hv is None else hv)
    try:
        return fd, block, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    finally:
        os.close(fd)


def test_a_file_is_opened_by_its_mode(image):
    _fd, block, access = opened({"path": image, "mode": "rw"})
    assert (block, access) == (False, os.O_RDWR)
    _fd, block, access = opened({"path": image, "mode": "ro"})
    assert (block, access) == (False, os.O_RDONLY)
    fd, _block = host.open_disk({"path": image, "mode": "ro"}, HV)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # never inherited by anything but QEMU's explicit hand-over
        assert os.path.samestat(os.fstat(fd), os.stat(image))
    finally:
        os.close(fd)


def test_symlinks_are_followed_like_the_operator_sees_them(image, tmp_path):
    link = tmp_path / "link.img"
    link.symlink_to(image)
    fd, _block = host.open_disk({"path": str(link), "mode": "ro"}, HV)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(image))
    finally:
        os.close(fd)


@pytest.mark.parametrize("disk_type", ["paravirtual", "scsi-hd", "scsi-cd", "ide"])
def test_what_is_neither_a_file_nor_a_block_device_is_refused(tmp_path, disk_type):
    before = open_fds()
    with pytest.raises(KvmError, match=r"^disk /dev/null: not a regular file or block device$"):
        host.open_disk({"path": "/dev/null", "mode": "ro", "type": disk_type}, HV)
    with pytest.raises(KvmError, match="not a regular file or block device"):
        host.open_disk({"path": str(tmp_path), "mode": "ro", "type": disk_type}, HV)
    with pytest.raises(KvmError, match="not a regular file or block device"):
        host.open_disk({"path": str(tmp_path), "mode": "rw", "type": disk_type}, HV)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for real would block the module for ever
    with pytest.raises(KvmError, match=r"fifo: not a regular file or block device$"):
        host.open_disk({"path": str(fifo), "mode": "ro", "type": disk_type}, HV)
    with pytest.raises(KvmError, match=r"^disk /nonexistent\.img: No such file or directory$"):
        host.open_disk({"path": "/nonexistent.img", "mode": "ro", "type": disk_type}, HV)
    assert open_fds() == before


@pytest.mark.parametrize("disk_type", ["scsi-block", "scsi-generic"])
def test_pass_through_needs_a_device(image, disk_type):
    before = open_fds()
    with pytest.raises(KvmError) as err:
        host.open_disk({"path": image, "mode": "rw", "type": disk_type}, HV)
    assert str(err.value) == (f"disk {image}: disk_type {disk_type} passes a host SCSI device through and needs a block or SCSI "
                              "generic device (or a uri QEMU reaches itself, like iscsi://), not a plain file; use scsi-hd")
    # the instance's disk_type decides for a disk without its own
    with pytest.raises(KvmError, match=f"disk_type {disk_type} passes"):
        host.open_disk({"path": image, "mode": "rw"}, hvparams.normalize({"disk_type": disk_type}))
    assert open_fds() == before
    _fd, block, _access = opened({"path": "/dev/null", "mode": "ro", "type": disk_type})  # a character device passes
    assert block is True


def test_a_block_device_is_flagged():
    _fd, block, access = opened({"path": a_block_device(), "mode": "ro"})
    assert (block, access) == (True, os.O_RDONLY)


def test_check_disk_opens_nothing_it_keeps(image):
    before = open_fds()
    host.check_disk({"path": image, "mode": "rw"}, HV)
    host.check_disk({"path": None, "uri": "nbd://h/e", "mode": "rw", "type": "scsi-block"}, HV)  # QEMU reaches a uri itself
    host.check_disk({"path": None, "mode": "ro", "type": "scsi-cd"}, HV)  # an empty drive
    assert open_fds() == before
    with pytest.raises(KvmError, match="a pass-through disk needs a path or a uri"):
        host.check_disk({"path": None, "mode": "rw", "type": "scsi-generic"}, HV)
    with pytest.raises(KvmError, match="No such file"):
        host.check_disk({"path": image + ".gone", "mode": "rw"}, HV)


@pytest.fixture
def rd(tmp_path) -> Iterator[RunDir]:
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened_dir:
        yield opened_dir


def runtime_on(tmp_path, count: int = 2) -> dict:
    rt = upgrade.upgrade(make_runtime())[0]
    for pos, disk in enumerate(rt["disks"][:count]):
        disk["path"] = str(tmp_path / f"d{pos}.img")
        (tmp_path / f"d{pos}.img").write_bytes(b"\0" * 512)
    rt["nics"][0]["network"] = {"type": "user"}
    return rt


def test_open_for_start_opens_monitors_serial_and_disks(rd, tmp_path):
    rt = runtime_on(tmp_path)
    where = paths(rd.path, "vm1")
    before = open_fds()
    got = host.open_for_start([rd.listen("vm1.qmp"), rd.listen("vm1.ro.qmp")], rd.open_append("vm1.serial.log"), rt)
    try:
        ids = [d["hvinfo"]["id"] for d in rt["disks"]]
        assert set(got.fds.disks) == set(ids) and got.fds.taps == {}
        for disk in rt["disks"]:
            assert os.path.samestat(os.fstat(got.fds.disks[disk["hvinfo"]["id"]][0]), os.stat(disk["path"]))
        assert [s.getsockname() for s in got.sockets] == [where.qmp, where.qmp_ro]
        assert (got.fds.qmp, got.fds.qmp_ro) == tuple(s.fileno() for s in got.sockets)
        assert os.path.samestat(os.fstat(got.fds.serial), os.stat(where.serial))
        assert len(open_fds() - before) == 5 and set(got.fds.all()) == open_fds() - before
    finally:
        got.close()
    assert open_fds() == before
    assert (got.fds.disks, got.fds.taps, got.fds.serial, got.sockets) == ({}, {}, -1, [])
    got.close()  # twice is harmless


def test_open_for_start_is_all_or_nothing(rd, tmp_path):
    rt = runtime_on(tmp_path)
    os.unlink(rt["disks"][1]["path"])
    before = open_fds()
    with pytest.raises(KvmError, match="No such file or directory"):
        host.open_for_start([rd.listen("vm1.qmp"), rd.listen("vm1.ro.qmp")], rd.open_append("vm1.serial.log"), rt)
    assert open_fds() == before  # the monitors and the serial log handed in are closed too


def test_opened_close_drops_the_extra_descriptors_too():
    read_end, write_end = os.pipe()
    before = open_fds()
    box = host.Opened(HostFds(-1, -1, read_end, {}, {}), extra=[write_end])
    box.close()
    assert open_fds() == before - {read_end, write_end}
