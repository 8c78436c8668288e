"""The target's images for copy_storage, on a real filesystem: room, exclusive creation, removal of exactly its own files."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import namedtuple

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage


def disk(path, fmt="raw", dev="disk-aaaaaaaa"):
    return {"path": str(path), "format": fmt, "mode": "rw", "hvinfo": {"id": dev}}


def test_room_refuses_an_existing_file_a_missing_directory_and_too_little_space(tmp_path, monkeypatch):
    (tmp_path / "there.img").write_bytes(b"someone's data")
    with pytest.raises(KvmError, match=r"there.img already exists on this host.*never writes over an existing file"):
        storage.check_room([(disk(tmp_path / "there.img"), 1 << 20)])
    os.symlink("/nonexistent", tmp_path / "dangling.img")
    with pytest.raises(KvmError, match=r"dangling.img already exists"):
        storage.check_room([(disk(tmp_path / "dangling.img"), 1 << 20)])
    with pytest.raises(KvmError, match=r"directory .*/nodir for disk disk-aaaaaaaa: No such file"):
        storage.check_room([(disk(tmp_path / "nodir" / "a.img"), 1 << 20)])
    storage.check_room([(disk(tmp_path / "a.img"), 1 << 20), (disk(tmp_path / "b.img"), 1 << 20)])
    vfs = namedtuple("vfs", "f_bavail f_frsize")
    monkeypatch.setattr(os, "statvfs", lambda _path: vfs(3 * 256, 4096))  # 3 MiB free
    storage.check_room([(disk(tmp_path / "a.img"), 1 << 20), (disk(tmp_path / "b.img"), 2 << 20)])
    with pytest.raises(KvmError, match=r"not enough space on this host: .* has 3.0 MiB free, the copied disks need 4.0 MiB"):
        storage.check_room([(disk(tmp_path / "a.img"), 2 << 20), (disk(tmp_path / "b.img"), 2 << 20)])


def test_raw_images_are_sparse_exact_private_and_never_over_a_file(tmp_path):
    records = storage.create_images([(disk(tmp_path / "a.img"), 64 << 20)], "vm1")
    st = os.stat(tmp_path / "a.img")
    token = records[0]["token"]
    assert records == [{"path": str(tmp_path / "a.img"), "dev": st.st_dev, "ino": st.st_ino, "token": token}]
    assert os.getxattr(tmp_path / "a.img", storage.XATTR) == f"{token} vm1".encode()  # the token, then the instance it was made for
    assert st.st_size == 64 << 20 and st.st_blocks == 0 and st.st_mode & 0o777 == 0o600
    with pytest.raises(KvmError, match=r"cannot create .*a.img: File exists"):
        storage.create_images([(disk(tmp_path / "a.img"), 1 << 20)], "vm1")
    assert os.stat(tmp_path / "a.img").st_ino == st.st_ino


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_qcow2_images_have_the_virtual_size(tmp_path):
    storage.create_images([(disk(tmp_path / "b.qcow2", "qcow2"), 24 << 20)], "vm1")
    info = subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "b.qcow2")], capture_output=True, text=True, check=True).stdout
    assert '"format": "qcow2"' in info and f'"virtual-size": {24 << 20}' in info


def test_creation_is_all_or_nothing(tmp_path):
    (tmp_path / "taken.img").write_bytes(b"x")
    with pytest.raises(KvmError, match=r"taken.img: File exists"):
        storage.create_images([(disk(tmp_path / "a.img"), 1 << 20), (disk(tmp_path / "taken.img"), 1 << 20)], "vm1")
    assert sorted(os.listdir(tmp_path)) == ["taken.img"]


def test_removal_takes_only_the_very_files_created(tmp_path):
    records = storage.create_images([(disk(tmp_path / f"{n}.img"), 1 << 20) for n in "abc"], "vm1")
    (tmp_path / "b.img").unlink()
    (tmp_path / "b.img").write_bytes(b"a new file at the same path: not ours")  # tmpfs even gives it b's inode number
    (tmp_path / "c.img").unlink()
    assert storage.still_ours(records) == [str(tmp_path / "a.img")]
    assert storage.remove_created(records) == [str(tmp_path / "a.img")]
    assert sorted(os.listdir(tmp_path)) == ["b.img"]
    assert storage.remove_created(records) == []


def test_without_extended_attributes_device_and_inode_decide(tmp_path, monkeypatch):
    def unsupported(*_args, **_kwargs):
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    records = storage.create_images([(disk(tmp_path / "a.img"), 1 << 20)], "vm1")
    assert records[0]["token"] is None
    assert storage.remove_created(records) == [str(tmp_path / "a.img")]


def test_no_image_where_another_user_could_swap_it(tmp_path):
    """Root creates and deletes images by path: a directory others can write (not sticky) is refused, and nothing is made."""
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    disk = {"path": str(shared / "a.img"), "format": "raw", "hvinfo": {"id": "disk-aaaaaaaa"}}
    with pytest.raises(KvmError, match=r"another user could replace the image"):
        storage.check_room([(disk, 1 << 20)])
    with pytest.raises(KvmError, match=r"another user could replace the image"):
        storage.create_images([(disk, 1 << 20)], "vm1")
    assert list(shared.iterdir()) == []


def test_a_qcow2_image_is_written_through_its_descriptor(tmp_path):
    tmp_path.chmod(0o755)
    disk = {"path": str(tmp_path / "a.qcow2"), "format": "qcow2", "hvinfo": {"id": "disk-aaaaaaaa"}}
    [rec] = storage.create_images([(disk, 64 << 20)], "vm1")
    assert (tmp_path / "a.qcow2").read_bytes()[:4] == b"QFI\xfb" and rec["ino"] == (tmp_path / "a.qcow2").stat().st_ino
    (tmp_path / "a.qcow2").chmod(0o600)
    tmp_path.chmod(0o777)  # others could now swap it: it is left alone
    assert storage.remove_created([rec]) == [] and (tmp_path / "a.qcow2").exists()
    tmp_path.chmod(0o755)
    assert storage.remove_created([rec]) == [str(tmp_path / "a.qcow2")]


def test_copies_an_interrupted_run_left_unrecorded_are_found_by_their_instance_only(tmp_path):
    tmp_path.chmod(0o755)
    plan = [(disk(tmp_path / "a.img"), 1 << 20), (disk(tmp_path / "b.img"), 1 << 20)]
    storage.create_images(plan[:1], "vm1")  # then the run was killed: no runtime file names a.img
    (tmp_path / "b.img").write_bytes(b"someone's data")  # no mark: never a leftover
    assert storage.leftovers(plan, "vm2") == ()
    assert storage.leftovers(plan, "vm1") == (str(tmp_path / "a.img"),)
    with open(tmp_path / "a.img", "rb"):  # a QEMU still on it
        assert storage.leftovers(plan, "vm1") == ()
    with pytest.raises(KvmError, match=r"b\.img already exists"):
        storage.check_room(plan, storage.leftovers(plan, "vm1"))
    assert storage.sweep(storage.leftovers(plan, "vm1")) == [str(tmp_path / "a.img")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.img"]


def test_disowned_images_are_no_partial_copies(tmp_path):
    tmp_path.chmod(0o755)
    plan = [(disk(tmp_path / "a.img"), 1 << 20)]
    records = storage.create_images(plan, "vm1")
    storage.disown(records)
    assert storage.leftovers(plan, "vm1") == () and storage.still_ours(records) == []
    assert storage.remove_created(records) == [] and (tmp_path / "a.img").exists()
