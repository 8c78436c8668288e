# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_migrate``: live migration of a running instance to a target started with ``state=incoming``.

The wait is event-driven (``MIGRATION`` events with a deadline). The source
is stopped, and its files removed, only after the migration completed: the
instance then lives on the target. On failure or timeout the migration is
cancelled and the source keeps running untouched. Both sides enable QEMU's
``return-path`` capability: without it the source reports ``completed`` as
soon as it has sent everything, even when the target then fails to load
the state (a different device layout), and stopping the source would lose
the VM.

With ``copy_storage`` (no shared storage; the target was started with
``copy_storage`` and exports fresh disks over NBD), QEMU's own mechanisms
move the disks while the guest runs:

1. per copied disk an NBD client node on the target's export and a
   ``blockdev-mirror`` into it (``write-blocking``: the guest's writes wait
   for the copy, so it converges under any write load); every job must
   report ``BLOCK_JOB_READY`` within ``timeout``;
2. ``migrate`` with ``pause-before-switchover``: RAM moves while the mirrors
   keep the copies in step; QEMU stops at ``pre-switchover`` with the guest
   paused and the disks still the source's;
3. ``block-job-cancel`` on each READY mirror (it finishes the final sync and
   ends ``COMPLETED`` without pivoting the source), ``blockdev-del`` of the
   NBD nodes, ``migrate-continue``: the device state moves and the target
   resumes on its complete copies.

Any failure on the way (a mirror error, the target gone, a deadline) rolls
back in this order: cancel the migration, cancel the jobs (forced) and wait
until they are gone, delete the NBD nodes, continue the guest if it was
running. The source never stops owning its disks (a mirror only reads them)
and its disk images are never touched before the migration completed;
after that they are stale copies, kept unless ``remove_source_disks`` asks
to delete them (a migration back to this host needs their paths free). The target's partial copies are
removed there by ``kvm_instance state=absent only_if_incoming=true`` (the
``kvm_migrate`` role does it).
"""

from __future__ import annotations

import os
import stat
from typing import Any, Mapping, Sequence

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage as copy_plan
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri as uris
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.mirror import DONE, JOB_EVENTS, Copy, settle_earlier_run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, open_session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import MIGRATION_CAPS
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.stop import remove_all
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.target import settle_incoming
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import MigrateResult, Migration
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import check_parents


def capabilities(pause: bool) -> list[dict[str, object]]:
    """The source's capabilities; pause-before-switchover is set either way, so an earlier run's setting never lingers."""
    return [*MIGRATION_CAPS, {"capability": "pause-before-switchover", "state": pause}]


def stats(info: Mapping[str, Any]) -> Migration:
    """The figures worth reporting from a final ``query-migrate``."""
    ram = info.get("ram", {})
    return {
        "status": info.get("status"),
        "total_time_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "setup_time_ms": info.get("setup-time"),
        "transferred_bytes": ram.get("transferred"),
        "dirty_sync_count": ram.get("dirty-sync-count"),
    }


async def _migrate(mon: qmp.Monitor, uri: str, timeout: float, max_bandwidth_mib: int) -> Migration:
    with mon.events(("MIGRATION", *JOB_EVENTS)) as leftovers:
        await settle_earlier_run(mon, leftovers)
    await mon.cmd("migrate-set-capabilities", {"capabilities": capabilities(False)}, step="migrate setup")
    if max_bandwidth_mib:
        await mon.cmd("migrate-set-parameters", {"max-bandwidth": max_bandwidth_mib << 20}, step="migrate setup")
    with mon.events(("MIGRATION",)) as listener:
        await mon.cmd("migrate", {"uri": uri}, step="migrate")
        try:
            await mon.wait_for(listener, lambda ev: ev["data"].get("status") in DONE, timeout, "end of migration")
        except QmpClosed:
            raise KvmError(f"the source QEMU exited during the migration to {uri}; "
                           "run kvm_instance_info on both hosts to see where the instance is", "migrate") from None
        except KvmTimeout:
            await mon.try_cmd("migrate_cancel")
            info = await mon.try_cmd("query-migrate") or {}
            raise KvmError(f"migration to {uri} did not complete within {timeout:g}s "
                           f"(status {info.get('status', 'unknown')}); cancelled, the source keeps running",
                           "migrate") from None
    info = await mon.cmd("query-migrate")
    if info.get("status") != "completed":
        reason = info.get("error-desc") or info.get("status")
        raise KvmError(f"migration to {uri} failed: {reason}; the source keeps running", "migrate")
    await mon.try_cmd("quit")
    return stats(info)


async def _migrate_copy(mon: qmp.Monitor, uri: str, nbd: storage.NbdExport, timeout: float,
                        max_bandwidth_mib: int) -> Migration:
    """The copy_storage migration (module docstring); the source keeps running on any failure."""
    with mon.events(("MIGRATION", *JOB_EVENTS)) as leftovers:
        await settle_earlier_run(mon, leftovers)
    was_running = bool((await mon.cmd("query-status", step="migrate setup"))["running"])
    await mon.cmd("migrate-set-capabilities", {"capabilities": capabilities(True)}, step="migrate setup")
    if max_bandwidth_mib:
        await mon.cmd("migrate-set-parameters", {"max-bandwidth": max_bandwidth_mib << 20}, step="migrate setup")
    with mon.events(("MIGRATION", *JOB_EVENTS)) as listener:
        copy = Copy(mon, listener, nbd.disks, nbd.host, nbd.port)
        try:
            await copy.start(timeout)
            await copy.switch_over(uri, timeout)
        except QmpClosed:
            raise KvmError(f"the source QEMU exited during the migration to {uri}; "
                           "run kvm_instance_info on both hosts to see where the instance is", "migrate") from None
        except BaseException as err:
            final = await copy.rollback(was_running)
            if final != "completed":
                if isinstance(err, KvmError):
                    raise KvmError(f"{err.msg}; rolled back, the source keeps running on its own disks", err.step) from None
                raise
        info = await mon.cmd("query-migrate")
        if info.get("status") != "completed":
            await copy.rollback(was_running)
            raise KvmError(f"migration to {uri} failed: {info.get('error-desc') or info.get('status')}; "
                           "rolled back, the source keeps running on its own disks", "migrate")
    await mon.try_cmd("quit")
    result = stats(info)
    result["storage"] = {"disks": [d["hvinfo"]["id"] for d in nbd.disks], "mirror_ready_ms": copy.ready_ms,
                         "nbd": f"{nbd.host}:{nbd.port}"}
    return result


async def migrate(session: Session, uri: str, timeout: float, max_bandwidth_mib: int,
                  copy: storage.NbdExport | None = None, remove_source_disks: bool = False) -> Migration:
    """Migrate, then stop the source and remove its files (and, if asked, the copied disks); returns migration stats."""
    pid = session.pid()
    rt = session.load()
    if not pid or rt is None:
        raise KvmError(f"instance {session.name} is not running in {session.where.runtime_dir}")
    await settle_incoming(session, rt, pid)
    mon = await session.monitor()
    if copy is None:
        result = await _migrate(mon, uri, timeout, max_bandwidth_mib)
    else:
        result = await _migrate_copy(mon, uri, copy, timeout, max_bandwidth_mib)
    await session.hang_up()
    if not process.wait_exit(pid, 30):
        session.kill()
    remove_all(session)
    if copy is not None and remove_source_disks:
        result["removed_source_disks"] = remove_disks(copy.disks)
    return result


def remove_disks(disks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Delete the source's images of disks that now live on the target (regular files only)."""
    removed = []
    for disk in disks:
        path = disk["path"]
        try:
            check_parents(path, f"remove_source_disks: {path}", "the image with a symlink to any file", "disk path")
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise KvmError(f"the instance runs on the target now, but its old image {path} here could not be removed: "
                           f"{err.strerror}") from None
        except KvmError as err:
            raise KvmError(f"the instance runs on the target now, but its old image here was left: {err.msg}") from None
    return removed


async def apply(call: Call) -> MigrateResult:
    """The whole kvm_migrate call, in one session on the source instance."""
    params = call.params
    target = uris.parse(params["target_uri"], "target_uri")
    copy_storage = params.get("copy_storage")
    if params.get("remove_source_disks") and not copy_storage:
        raise KvmError("remove_source_disks only goes with copy_storage (with shared storage the target uses the same files)")
    if copy_storage:
        uris.check_nbd_port(target, params.get("nbd_port"), "target_uri")
        copy_plan.shared_prefixes(params.get("shared_dirs"))
    async with open_session(call, params["name"]) as session:
        if call.check:
            if (await session.status())[0] in ("stopped", "absent", "unknown"):
                raise KvmError(f"instance {session.name} is not running (or does not answer QMP) in {session.where.runtime_dir}")
            result: MigrateResult = {"changed": True, "target_uri": target.uri}
            if copy_storage:
                rt = session.load()
                result["copy_storage"] = [d["hvinfo"]["id"] for d in copy_plan.copied_disks(rt, params.get("shared_dirs"))] if rt else []
            return result
        if session.rd.missing:
            raise KvmError(f"instance {session.name} is not running in {session.where.runtime_dir}")
        rt = session.load()
        nbd = None
        if copy_storage and rt is not None:
            nbd = storage.NbdExport(target.host or "", params["nbd_port"], copy_plan.copied_disks(rt, params.get("shared_dirs") or []))
        migration = await migrate(session, target.uri, params["timeout"], params["max_bandwidth"], nbd,
                                  bool(params.get("remove_source_disks")))
    return {"changed": True, "target_uri": target.uri, "migration": migration}
