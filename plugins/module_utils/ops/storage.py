# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The target's side of a ``copy_storage`` migration: room, fresh images, NBD exports, and cleaning up.

The module (root) creates each image itself, exclusively (``O_EXCL``: never
over a file that exists, whoever made it), hands it to QEMU by descriptor
like any disk, and records each one's path, device, inode and a random
token it also writes into the file's ``trusted.kvmhv.image`` extended
attribute in the runtime file (``created_images``) while the instance is
marked ``incoming``. ``remove_created`` deletes a path only while it is
still that very file (a filesystem reuses the inode number of a deleted
file at once, so device and inode alone do not say it; the token does), so
a rollback or ``state=absent`` removes exactly the partial copies this
target made and nothing that was there before or came later. On a
filesystem without extended attributes the token is null and device and
inode must do.
Once the migration has arrived, the attribute is removed, then the record:
the images are then the instance's disks, kept like any other.

The attribute also names the instance (``<token> <name>``). A run killed
after it created an image and before the runtime file recorded it, or a
power cut that took the runtime directory (tmpfs) with it, leaves images
that no record names; the next ``state=incoming`` of that instance (which
holds its lock) finds its own name on them and removes them before it
creates new ones, unless a process still holds one open.

Free space is checked up front (per filesystem, the full virtual size of
every image: a sparse copy can fill up later), so a host without room fails
at once with a clear message instead of halfway through the mirror.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import check_parents
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import CreatedImage

QEMU_IMG_TIMEOUT = 60
XATTR = "trusted.kvmhv.image"  # trusted.*: root only, and tmpfs has it on every kernel


def check_room(plan: list[tuple[dict[str, Any], int]], leftovers: tuple[str, ...] = ()) -> None:
    """Every image can be created here: no file at its path (but ``leftovers``), its directory exists, enough free space."""
    needs: dict[int, tuple[str, int]] = {}
    free: dict[int, int] = {}
    for disk, size in plan:
        path = disk["path"]
        if os.path.lexists(path) and path not in leftovers:
            raise KvmError(f"copy_storage: {path} already exists on this host; the target creates every copied disk "
                           "itself and never writes over an existing file (remove it, or migrate with shared storage)")
        parent = os.path.dirname(path)
        try:
            st = os.stat(parent)
            vfs = os.statvfs(parent)
        except OSError as err:
            raise KvmError(f"copy_storage: directory {parent} for disk {disk['hvinfo']['id']}: {err.strerror}") from None
        _check_image_parents(path)
        if not stat.S_ISDIR(st.st_mode):
            raise KvmError(f"copy_storage: {parent} is not a directory")
        where, need = needs.get(st.st_dev, (parent, 0))
        needs[st.st_dev] = (where, need + size)
        free[st.st_dev] = vfs.f_bavail * vfs.f_frsize
    short = storage.shortfalls(needs, free)
    if short:
        raise KvmError("copy_storage: not enough space on this host: " + "; ".join(short))


def _check_image_parents(path: str) -> None:
    """Root creates, fills and deletes images by path: nobody else may be able to swap one (or a directory above it)."""
    try:
        check_parents(path, f"copy_storage: image {path}", "the image with a symlink to any file", "disk path")
    except OSError as err:
        raise KvmError(f"copy_storage: directory of {path}: {err.strerror}") from None


def _mark(token: str, owner: str) -> bytes:
    return f"{token} {owner}".encode()


def leftovers(plan: list[tuple[dict[str, Any], int]], owner: str) -> tuple[str, ...]:
    """Planned paths holding an image an interrupted target of ``owner`` made and nothing records (module docstring)."""
    found = []
    for disk, _size in plan:
        path = disk["path"]
        try:
            value = os.getxattr(path, XATTR, follow_symlinks=False)
            regular = stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            continue
        parts = value.split(b" ", 1)
        if regular and len(parts) == 2 and parts[1] == owner.encode() and _is_ours_path(path) and not _held_open(path):
            found.append(path)
    return tuple(found)


def _is_ours_path(path: str) -> bool:
    try:
        _check_image_parents(path)
    except KvmError:
        return False
    return True


def _held_open(path: str) -> bool:
    """Whether any process has the file open (a QEMU that still runs on it)."""
    st = os.stat(path)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    other = os.stat(f"/proc/{pid}/fd/{fd}")
                    if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                        return True
    return False


def sweep(paths: tuple[str, ...]) -> list[str]:
    """Remove the ``leftovers`` found (under the instance's lock, just before new images are made)."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise KvmError(f"copy_storage: cannot remove the partial copy {path} an interrupted run left: {err.strerror}") from None
        removed.append(path)
    return removed


def disown(records: list[CreatedImage]) -> None:
    """The migration arrived: the images become the instance's disks, never again removable as partial copies."""
    for rec in records:
        if _is_ours(rec) and rec.get("token") is not None:
            try:
                os.removexattr(rec["path"], XATTR, follow_symlinks=False)
            except OSError as err:
                raise KvmError(f"cannot settle the copied disk {rec['path']}: {err.strerror}") from None


def _create_one(disk: Mapping[str, Any], size: int, qemu_img: str, owner: str) -> CreatedImage:
    path = disk["path"]
    _check_image_parents(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise KvmError(f"copy_storage: cannot create {path}: {err.strerror}") from None
    st = os.fstat(fd)
    token: str | None = secrets.token_hex(8)
    try:
        os.setxattr(fd, XATTR, _mark(str(token), owner))
    except OSError:
        token = None  # no extended attributes here: device and inode must do
    record: CreatedImage = {"path": path, "dev": st.st_dev, "ino": st.st_ino, "token": token}
    try:
        try:
            if disk["format"] == "raw":
                os.ftruncate(fd, size)  # sparse: the mirror writes what the guest has
            else:
                # qemu-img writes the header into the very file just made, reached through its descriptor,
                # never by name (same inode, checked below).
                _qcow2_header(fd, path, size, qemu_img)
        finally:
            os.close(fd)
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (record["dev"], record["ino"]):
            raise KvmError(f"copy_storage: {path} was replaced while it was created")
    except BaseException:
        remove_created([record])
        raise
    return record


def _qcow2_header(fd: int, path: str, size: int, qemu_img: str) -> None:
    proc = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", f"/proc/self/fd/{fd}", str(size)], capture_output=True,
                          text=True, pass_fds=(fd,), timeout=QEMU_IMG_TIMEOUT, check=False,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    if proc.returncode != 0:
        raise KvmError(f"copy_storage: qemu-img create {path}: {(proc.stderr or proc.stdout).strip() or proc.returncode}")


def create_images(plan: list[tuple[dict[str, Any], int]], owner: str, qemu_img: str = "qemu-img") -> list[CreatedImage]:
    """Create every planned image for instance ``owner`` (all or nothing); returns the ``created_images`` records."""
    created: list[CreatedImage] = []
    try:
        for disk, size in plan:
            created.append(_create_one(disk, size, qemu_img, owner))
    except BaseException:
        remove_created(created)
        raise
    return created


def _is_ours(rec: CreatedImage) -> bool:
    """Whether the recorded image is still the very file created (device, inode and token).

    An image whose directories another user could now change is never
    treated as ours (it stays where it is): the unlink goes by path.
    """
    try:
        _check_image_parents(rec["path"])
    except KvmError:
        return False
    try:
        st = os.lstat(rec["path"])
    except FileNotFoundError:
        return False
    except OSError as err:
        raise KvmError(f"cannot check {rec['path']}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (rec["dev"], rec["ino"]):
        return False
    if rec.get("token") is None:
        return True
    try:
        return os.getxattr(rec["path"], XATTR, follow_symlinks=False).split(b" ", 1)[0] == str(rec["token"]).encode()
    except OSError:
        return False


def remove_created(records: list[CreatedImage]) -> list[str]:
    """Delete each recorded image that is still the very file created; returns the paths removed."""
    removed = []
    for rec in records:
        if not _is_ours(rec):
            continue
        try:
            os.unlink(rec["path"])
        except FileNotFoundError:
            continue
        except OSError as err:
            raise KvmError(f"cannot remove {rec['path']}: {err.strerror}") from None
        removed.append(rec["path"])
    return removed


def still_ours(records: list[CreatedImage]) -> list[str]:
    """The recorded images that exist and are still the files created (what ``remove_created`` would delete)."""
    return [rec["path"] for rec in records if _is_ours(rec)]


@dataclass(frozen=True)
class NbdExport:
    """What a copy_storage target serves over NBD: its disks, on the migration address's host and ``port``."""

    host: str
    port: int
    disks: list[dict[str, Any]]


async def export(mon: qmp.Monitor, nbd: NbdExport) -> None:
    """Start the NBD server on the migration address and export every copied disk writable (target, inmigrate)."""
    await mon.cmd("nbd-server-start", storage.server_args(nbd.host, nbd.port, len(nbd.disks)), step="copy_storage: NBD server")
    for disk in nbd.disks:
        await mon.cmd("block-export-add", storage.export_args(disk), step="copy_storage: NBD export")


async def unexport(mon: qmp.Monitor) -> None:
    """Close the NBD server of a target whose migration arrived (best effort: QEMU may be gone).

    Stopping the server closes every NBD export (QEMU 7.2); a server already gone is fine.
    """
    await mon.try_cmd("nbd-server-stop")
