# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_instance state=incoming``: the target side of a migration.

The target starts QEMU from the source's runtime file (same ids, same
hvinfo, hotplugged devices included) with ``-incoming`` and marks the
instance ``incoming`` until the guest runs here (``ops.target``). Running
``incoming`` again after the migration arrived confirms it: the mark goes,
the NBD server closes, the images become the instance's.

With ``copy_storage`` the target creates the copied disks itself (no file
is ever written over), records them (``created_images``) while it is marked
incoming, and exports them over NBD for the source's mirror. Copies a
failed earlier target of this instance left go first, whether recorded or
only marked with the instance's name.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import TYPE_CHECKING, Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage as copy_plan
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.spec import summary
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, open_session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import public, start
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.target import settle_incoming
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host, process
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import InstanceDetails, InstanceResult, NewImage
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, Runtime

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11: module_utils also run on 3.10


def check_unix_target(path: str) -> None:
    """A unix migration socket may replace only a stale socket: never a file, a link or a live socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise KvmError(f"migration socket {path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: a stale socket left by an earlier target
        return
    except OSError as err:
        raise KvmError(f"migration socket {path}: {err.strerror}") from None
    finally:
        probe.close()
    raise KvmError(f"migration socket {path} is in use by another process")


def same_tree(current: Runtime, source: Runtime) -> bool:
    """Whether the target here was started from this very source runtime (same spec, same addresses)."""
    return summary(current) == summary(source) and [d["hvinfo"] for d in current["disks"] + current["nics"]] == \
        [d["hvinfo"] for d in source["disks"] + source["nics"]]


def copy_images(session: Session, source: Runtime, target: uri.MigrationUri, room: bool) -> list[tuple[dict[str, Any], int]] | None:
    """What copy_storage creates here (None without copy_storage); checks the room if ``room``, creates nothing."""
    params = session.call.params
    if not params.get("copy_storage"):
        return None
    uri.check_nbd_port(target, params.get("nbd_port"), "migration_uri")
    plan = copy_plan.plan_images(source, params.get("disk_sizes"), params.get("shared_dirs"))
    if room:
        # Copies an interrupted target of this instance left without a record go (we hold its lock).
        left = storage.leftovers(plan, session.name)
        storage.check_room(plan, left)
        if not session.check:
            storage.sweep(left)
    return plan


async def _result(session: Session, changed: bool, rt: Runtime, before: Any, after: Any,
                  **extra: Unpack[InstanceDetails]) -> InstanceResult:
    state, pid = await session.status()
    if rt.get("mark") == INCOMING and pid is None:
        state = "incoming-failed"
    result: InstanceResult = {"changed": changed, "pending": [], "recovered": False, **extra,
                              "instance": public(session, rt, state, pid)}
    if session.call.diff and changed:
        result["diff"] = {"before": before or {}, "after": after or {}}
    return result


async def incoming(session: Session) -> InstanceResult:
    params = session.call.params
    target = uri.parse(params["migration_uri"], "migration_uri")
    source = runtime_file.read_path(params["runtime"])[0]
    source.pop("mark", None)  # the source's own bookkeeping, not this target's
    source.pop("created_images", None)
    state, pid = await session.status()
    current = session.load()
    if pid:
        if current is not None and current.get("mark") == INCOMING and same_tree(current, source):
            if state == "incoming":
                return await _result(session, False, current, None, None)  # still waiting for the migration
            # The migration arrived: confirm it (drop the mark, close the NBD server).
            settled = await settle_incoming(session, current, pid)
            return await _result(session, True, settled, {"status": "incoming"}, {"status": "running"}, confirmed=True)
        raise KvmError(f"instance {session.name} already runs here ({state}); remove it first with state=absent")
    if current is not None and current.get("mark") != INCOMING:
        raise KvmError(f"instance {session.name} already has a runtime file here ({session.where.runtime}); "
                       "remove it first with state=absent")
    # A failed earlier target of this instance: its partial copies go before new ones are made.
    earlier = (current or {}).get("created_images") or []
    stale = storage.still_ours(earlier)
    if stale and not session.check:
        storage.remove_created(earlier)
    user = process.resolve_user(params["qemu_user"])
    plan = copy_images(session, source, target, room=not (stale and session.check))  # check mode: the stale copies are still there
    copied = {d["uuid"] for d, _size in plan or []}
    for disk in source["disks"]:
        if disk["uuid"] not in copied:
            host.check_disk(dict(disk), source["hvparams"])
    images: list[NewImage] = [{"path": d["path"], "format": d["format"], "size": size} for d, size in plan or []]
    if session.check:
        result = await _result(session, True, source, {}, summary(source), created_images=images)
        result["instance"]["status"] = "incoming"
        return result
    if target.kind == "unix" and target.path:
        check_unix_target(target.path)
    created = storage.create_images(plan, session.name) if plan is not None else []
    try:
        nbd = None
        if plan is not None:
            source["created_images"] = created
            nbd = storage.NbdExport(target.host or "", params["nbd_port"], [d for d, _size in plan])
        await start(session, source, user, params["qemu_binary"], incoming_uri=target.uri, nbd=nbd)
    except BaseException:
        storage.remove_created(created)
        raise
    return await _result(session, True, source, {}, summary(source), created_images=images)


async def apply(call: Call) -> InstanceResult:
    """The whole ``kvm_instance state=incoming`` call, in one session on the instance."""
    async with open_session(call, call.params["name"], create=True) as session:
        return await incoming(session)
