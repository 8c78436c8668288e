# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration without shared storage (``copy_storage``): the plan both ends derive from one runtime.

Which disks are copied: every read-write disk with a ``path`` outside the
``shared_dirs`` both ends are given (directories on storage the two hosts
share: those disks stay where they are, as in a shared-storage migration).
A disk QEMU reaches itself (``uri``: iSCSI, NBD) is already shared, and a
read-only disk (an installation ISO) is expected at the same path on the
target, as with shared storage. The target creates each copied disk at the same path,
in the same format and with exactly the virtual size the source reports
(QEMU's mirror refuses any other size), never over an existing file, and
exports it writable over NBD on the migration address under the disk's
device id. The source connects one NBD client node per disk and mirrors
into it (``kvmhv-nbd<i>`` / job ``kvmhv-mirror<i>``: names no device id can
take, since ids start with ``disk-``, ``nic-`` or ``hot``).

Everything here is pure: QMP arguments and checks, no I/O.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import CreatedImage, Runtime

COPY_FORMATS = ("raw", "qcow2")
NODE_PREFIX = "kvmhv-nbd"
JOB_PREFIX = "kvmhv-mirror"
# The guest's writes wait for the mirror (write-blocking): the copy always
# converges, whatever the guest's write rate; "background" may never reach READY.
COPY_MODE = "write-blocking"
MIB = 1 << 20


def shared_prefixes(shared_dirs: Any) -> tuple[str, ...]:
    """``shared_dirs`` checked and normalised into path prefixes (``/srv/shared/``)."""
    if shared_dirs is None:
        return ()
    if not isinstance(shared_dirs, list) or not all(isinstance(d, str) and os.path.isabs(d) for d in shared_dirs):
        raise KvmError(f"shared_dirs {shared_dirs!r} must be a list of absolute directory paths")
    return tuple(os.path.normpath(d).rstrip("/") + "/" for d in shared_dirs)


def copied_disks(rt: Runtime, shared_dirs: Any = None) -> list[dict[str, Any]]:
    """The disks a copy_storage migration copies, in runtime order (the same list on both ends).

    Writable disks QEMU placed itself (``fixed``, from a Ganeti ``kvm_cmd``)
    have no device of their own to mirror into: an instance with one outside
    ``shared_dirs`` is refused, never migrated onto whatever file the target
    has at that path.
    """
    shared = shared_prefixes(shared_dirs)
    stuck = [str(d.get("path")) for d in rt.get("fixed", []) if d.get("kind") == "disk" and d.get("mode") != "ro"
             and d.get("path") and not os.path.normpath(str(d["path"])).startswith(shared)]
    if stuck:
        raise KvmError(f"copy_storage cannot copy {', '.join(stuck)}: a disk QEMU placed itself (from Ganeti's kvm_cmd) "
                       "has no device to mirror into; put it on storage both hosts share (shared_dirs) or migrate with "
                       "shared storage")
    return [dict(d) for d in rt["disks"] if d.get("path") and not d.get("uri") and d.get("mode", "rw") == "rw"
            and not os.path.normpath(str(d["path"])).startswith(shared)]


def plan_images(rt: Runtime, sizes: Mapping[str, Any] | None, shared_dirs: Any = None) -> list[tuple[dict[str, Any], int]]:
    """(disk, virtual size in bytes) of every image the target creates; a KvmError names what is wrong.

    ``sizes`` maps disk uuid to the virtual size kvm_instance_info reports on the source.
    """
    sizes = sizes or {}
    plan = []
    for disk in copied_disks(rt, shared_dirs):
        path, dev_id = disk["path"], disk["hvinfo"]["id"]
        size = sizes.get(disk["uuid"])
        if isinstance(size, str) and size.isascii() and size.isdigit():
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise KvmError(f"copy_storage: disk {dev_id} ({path}) has no virtual size in disk_sizes (uuid {disk['uuid']}): "
                           "pass the sizes kvm_instance_info reports on the source")
        if size % 512:
            raise KvmError(f"copy_storage: disk {dev_id} size {size} is not a multiple of 512 bytes")
        if disk["format"] not in COPY_FORMATS:
            raise KvmError(f"copy_storage: disk {dev_id} has format {disk['format']}; only {', '.join(COPY_FORMATS)} can be created")
        if os.path.normpath(path) != path or path.startswith("/dev/") or path.startswith("/proc/") or path.startswith("/sys/"):
            raise KvmError(f"copy_storage: disk {dev_id} path {path} is not a plain file path; copy_storage creates image files")
        plan.append((disk, size))
    return plan


def shortfalls(needs: dict[Any, tuple[str, int]], free: dict[Any, int]) -> list[str]:
    """Filesystems that lack room: ``needs`` maps a filesystem to (a directory on it, bytes needed)."""
    short = []
    for fs, (where, need) in sorted(needs.items(), key=lambda item: item[1][0]):
        if free[fs] < need:
            short.append(f"{where} has {free[fs] / MIB:.1f} MiB free, the copied disks need {need / MIB:.1f} MiB")
    return short


def nbd_host(host: str) -> str:
    """An address of a migration URI as QMP's inet address takes it (IPv6 without brackets)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def server_args(host: str, port: int, exports: int) -> dict[str, object]:
    """``nbd-server-start`` on the target: one connection per export, the source's mirror.

    The exports are writable and NBD has no authentication here, so nobody
    else may hold a connection while the source's mirrors are connected (the
    migration stream itself is as open: use a trusted network, README).
    """
    return {"addr": {"type": "inet", "data": {"host": nbd_host(host), "port": str(port)}}, "max-connections": max(1, exports)}


def export_args(disk: Mapping[str, Any]) -> dict[str, object]:
    """``block-export-add``: the target's disk node, writable, named like the device."""
    dev_id = disk["hvinfo"]["id"]
    return {"type": "nbd", "id": dev_id, "node-name": dev_id, "name": dev_id, "writable": True}


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def job_id(index: int) -> str:
    return f"{JOB_PREFIX}{index}"


def client_args(index: int, disk: Mapping[str, Any], host: str, port: int) -> dict[str, object]:
    """``blockdev-add`` on the source: an NBD client node for the target's export of ``disk``."""
    return {"driver": "nbd", "node-name": node_name(index), "export": disk["hvinfo"]["id"],
            "server": {"type": "inet", "host": nbd_host(host), "port": str(port)}}


def mirror_args(index: int, disk: Mapping[str, Any]) -> dict[str, object]:
    """``blockdev-mirror`` of the source's disk node into its NBD client node."""
    return {"job-id": job_id(index), "device": disk["hvinfo"]["id"], "target": node_name(index), "sync": "full",
            "copy-mode": COPY_MODE, "auto-finalize": True, "auto-dismiss": True}


def check_created(records: Any) -> list[CreatedImage]:
    """The runtime's ``created_images`` (images a migration target made), strictly checked.

    It decides what ``state=absent`` deletes, so a damaged entry is an error,
    never a guess: each is an absolute path with the device and inode the
    target's file had when it was created and the token written into its
    extended attributes (null where the filesystem has none).
    """
    if not isinstance(records, list):
        raise KvmError("runtime field 'created_images' must be a list")
    for pos, rec in enumerate(records):
        if not isinstance(rec, dict) or set(rec) != {"path", "dev", "ino", "token"}:
            raise KvmError(f"runtime created_images {pos} must be {{path, dev, ino, token}}")
        if rec["token"] is not None and (not isinstance(rec["token"], str) or not rec["token"].isalnum()):
            raise KvmError(f"runtime created_images {pos}: token must be null or a hex string")
        path = rec["path"]
        if not isinstance(path, str) or not os.path.isabs(path) or os.path.normpath(path) != path or "\x00" in path:
            raise KvmError(f"runtime created_images {pos}: path {path!r} must be an absolute, normalised path")
        for key in ("dev", "ino"):
            if isinstance(rec[key], bool) or not isinstance(rec[key], int) or rec[key] < 0:
                raise KvmError(f"runtime created_images {pos}: {key} must be a non-negative integer")
    return records
