# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the module opens on the host so that QEMU never has to.

Disks are opened here with the module's privileges (following the operator's
path, symlinks included, as ``ls`` would) and handed to QEMU as descriptors:
QEMU's user needs no access to any image, and what QEMU gets is exactly the
file that was checked. Taps are opened (created if missing), attached to
their bridge and brought up here, then handed over the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass, field
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import tap
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.argv import HostFds
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime


def open_disk(disk: Mapping[str, Any], hvparams: Mapping[str, Any]) -> tuple[int, bool]:
    """(descriptor, is a block device) for a disk's path, opened read-only or read-write by its mode.

    The path is looked at first (``O_PATH``: opening nothing) and opened for
    real only when it is a kind of file a disk can be, through that very
    inode: a FIFO never blocks the module, and a device node of another kind
    is never opened (opening some has effects, like arming a watchdog).
    """
    path = disk["path"]
    flags = (os.O_RDONLY if disk["mode"] == "ro" else os.O_RDWR) | os.O_CLOEXEC | os.O_NOCTTY
    try:
        probe = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as err:
        raise KvmError(f"disk {path}: {err.strerror}") from None
    try:
        mode = os.fstat(probe).st_mode
        _check_disk_kind(disk, hvparams, mode)
        fd = os.open(f"/proc/self/fd/{probe}", flags)
    except OSError as err:
        raise KvmError(f"disk {path}: {err.strerror}") from None
    finally:
        os.close(probe)
    return fd, stat.S_ISBLK(mode) or stat.S_ISCHR(mode)


def _check_disk_kind(disk: Mapping[str, Any], hvparams: Mapping[str, Any], mode: int) -> None:
    kind = allocator.disk_type(disk, hvparams)
    problem = None
    if kind in hvp.PASSTHROUGH_DISK_TYPES:
        if not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)):
            problem = (f"disk_type {kind} passes a host SCSI device through and needs a block or SCSI generic "
                       "device (or a uri QEMU reaches itself, like iscsi://), not a plain file; use scsi-hd")
    elif not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        problem = "not a regular file or block device"
    if problem:
        raise KvmError(f"disk {disk['path']}: {problem}")


def check_disk(disk: Mapping[str, Any], hvparams: Mapping[str, Any]) -> None:
    """What a start would check for the disk, without keeping anything open (check mode)."""
    if disk.get("path"):
        fd, _block = open_disk(disk, hvparams)
        os.close(fd)
    elif not disk.get("uri") and allocator.disk_type(disk, hvparams) in hvp.PASSTHROUGH_DISK_TYPES:
        raise KvmError("a pass-through disk needs a path or a uri")


@dataclass
class Opened:
    """Everything opened for one start; ``close`` drops the module's copies once QEMU holds its own."""

    fds: HostFds
    sockets: list[socket.socket] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for fd in [self.fds.serial, *(fd for fd, _b in self.fds.disks.values()), *self.fds.taps.values(), *self.extra]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.sockets, self.extra = [], []
        self.fds.disks, self.fds.taps, self.fds.serial = {}, {}, -1


def open_for_start(sockets: list[socket.socket], serial: int, rt: Runtime) -> Opened:
    """Disks and taps for a start of ``rt`` beside the two listening monitors and the serial log the caller
    opened; all or nothing (on failure everything passed in is closed too)."""
    disks: dict[str, tuple[int, bool]] = {}
    taps: dict[str, int] = {}
    try:
        for key, disk in [(d["hvinfo"]["id"], d) for d in rt["disks"] if d.get("path")] + fixed.disks(rt):
            disks[key] = open_disk(dict(disk), rt["hvparams"])
        for key, nic in [(n["hvinfo"]["id"], n) for n in rt["nics"]] + [(n["netdev"], n) for n in fixed.nics(rt)]:
            net = nic.get("network") or {}
            if net.get("type") == "tap":
                taps[key] = tap.open_tap(net["ifname"], net.get("bridge"))[0]
    except BaseException:
        Opened(HostFds(-1, -1, serial, disks, taps), sockets).close()
        raise
    return Opened(HostFds(sockets[0].fileno(), sockets[1].fileno(), serial, disks, taps), sockets)
