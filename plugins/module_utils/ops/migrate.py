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
import time
from typing import Any, Callable

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.common import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri as uris
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import lifecycle
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.lifecycle import MIGRATION_CAPS
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, check_parents, open_rundir, paths

DONE = ("completed", "failed", "cancelled")
# Statuses in which a migration is still under way and migrate_cancel applies.
UNDER_WAY = ("setup", "active", "pre-switchover", "device", "wait-unplug")
JOB_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR")
ENDED = ("completed", "failed", "cancelled")
ROLLBACK_TIMEOUT = 30.0


def capabilities(pause: bool) -> list[dict[str, Any]]:
    """The source's capabilities; pause-before-switchover is set either way, so an earlier run's setting never lingers."""
    return [*MIGRATION_CAPS, {"capability": "pause-before-switchover", "state": pause}]


def stats(info: dict[str, Any]) -> dict[str, Any]:
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


class Copy:
    """The state of a copy_storage migration on the source, kept up to date from QMP events."""

    def __init__(self, mon: qmp.Monitor, listener: Any, disks: list[dict[str, Any]], host: str, port: int) -> None:
        self.mon = mon
        self.listener = listener
        self.disks = disks
        self.host = host
        self.port = port
        self.nodes: list[str] = []  # NBD client nodes added (deleted on the way out)
        self.jobs: dict[str, str] = {}  # job id -> running | ready | completed | failed | cancelled
        self.errors: dict[str, str] = {}
        self.migration: str | None = None
        self.ready_ms: int | None = None

    def feed(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event["event"] == "MIGRATION":
            self.migration = data.get("status")
            return
        job = data.get("device")
        if job not in self.jobs:
            return
        if event["event"] == "BLOCK_JOB_READY":
            self.jobs[job] = "ready"
        elif event["event"] == "BLOCK_JOB_COMPLETED":
            self.jobs[job] = "failed" if data.get("error") else "completed"
            if data.get("error"):
                self.errors[job] = data["error"]  # QEMU's own reason beats the per-request error events
        elif event["event"] == "BLOCK_JOB_CANCELLED":
            self.jobs[job] = "cancelled"
        elif event["event"] == "BLOCK_JOB_ERROR":
            self.errors.setdefault(job, f"{data.get('operation', 'I/O')} error on the target")

    async def until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Take events until ``done()`` holds; KvmTimeout at the deadline, QmpClosed if QEMU exits."""
        if not done():
            await self.mon.wait_for(self.listener, self._fed(done), timeout, what)

    def _fed(self, done: Callable[[], bool]) -> Callable[[dict[str, Any]], bool]:
        """An event predicate that records the event, then asks ``done()``."""
        def take(event: dict[str, Any]) -> bool:
            self.feed(event)
            return done()
        return take

    def disk_of(self, job: str) -> str:
        index = int(job[len(storage.JOB_PREFIX):])
        return f"disk {self.disks[index]['hvinfo']['id']} ({self.disks[index]['path']})"

    def ended(self) -> list[str]:
        return [job for job, state in self.jobs.items() if state in ENDED]

    def failure(self, phase: str) -> KvmError:
        """Why the copy stopped, naming the first disk whose mirror ended and QEMU's reason."""
        job = next((j for j in self.jobs if self.jobs[j] in ENDED), None)
        if job is None:
            return KvmError(f"the copy of the disks to {self.host}:{self.port} stopped {phase}", "copy_storage")
        reason = self.errors.get(job) or f"the mirror ended ({self.jobs[job]})"
        return KvmError(f"the copy of {self.disk_of(job)} to {self.host}:{self.port} failed {phase}: {reason}", "copy_storage")

    async def start(self, timeout: float) -> None:
        """NBD client node and mirror per disk, then wait until every mirror is READY."""
        started = time.monotonic()
        for index, disk in enumerate(self.disks):
            await self.mon.cmd("blockdev-add", storage.client_args(index, disk, self.host, self.port), step="copy_storage: connect to the target's NBD export")
            self.nodes.append(storage.node_name(index))
            self.jobs[storage.job_id(index)] = "running"
            await self.mon.cmd("blockdev-mirror", storage.mirror_args(index, disk), step="copy_storage: mirror")
        faults.point("copy-mirroring")
        try:
            await self.until(lambda: bool(self.ended()) or all(s == "ready" for s in self.jobs.values()), timeout,
                             "every disk mirror READY")
        except KvmTimeout:
            behind = [self.disk_of(j) for j, s in self.jobs.items() if s != "ready"]
            raise KvmError(f"the copy of {', '.join(behind)} to {self.host} was not in step within {timeout:g}s", "copy_storage") from None
        if self.ended():
            raise self.failure("while copying")
        self.ready_ms = int((time.monotonic() - started) * 1000)
        faults.point("copy-ready")

    async def switch_over(self, uri: str, timeout: float) -> None:
        """Migrate RAM; at pre-switchover finish every mirror, drop the NBD nodes and let the migration complete."""
        await self.mon.cmd("migrate", {"uri": uri}, step="migrate")
        await self.until(lambda: bool(self.ended()) or self.migration in ("pre-switchover", *DONE), timeout,
                         "pre-switchover (RAM copied)")
        if self.ended():
            raise self.failure("during the migration")
        if self.migration != "pre-switchover":
            info = await self.mon.try_cmd("query-migrate") or {}
            raise KvmError(f"migration to {uri} failed: {info.get('error-desc') or self.migration}", "migrate")
        faults.point("copy-pre-switchover")
        # The guest is paused: finish each copy (a READY mirror cancelled completes its final sync).
        for job in self.jobs:
            await self.mon.cmd("block-job-cancel", {"device": job}, step="copy_storage: final sync")
        await self.until(lambda: all(s in ENDED for s in self.jobs.values()), timeout, "the final sync of every disk")
        unfinished = [j for j, s in self.jobs.items() if s != "completed"]
        if unfinished:
            raise self.failure("in the final sync")
        for node in list(self.nodes):
            await self.mon.cmd("blockdev-del", {"node-name": node}, step="copy_storage: disconnect")
            self.nodes.remove(node)
        await self.mon.cmd("migrate-continue", {"state": "pre-switchover"}, step="migrate")
        await self.until(lambda: self.migration in DONE, timeout, "end of migration")

    async def rollback(self, was_running: bool) -> str | None:
        """Undo everything on the source (best effort, every step bounded); returns the migration's last status."""
        info = await self.mon.try_cmd("query-migrate") or {}
        self.migration = info.get("status", self.migration)
        if self.migration in UNDER_WAY:
            await self.mon.try_cmd("migrate_cancel")
            try:
                await self.until(lambda: self.migration in DONE, ROLLBACK_TIMEOUT, "the cancelled migration to end")
            except KvmError:
                pass
        if self.migration == "completed":
            return "completed"  # too late to undo: the guest runs on the target
        live = {job["device"] for job in await self.mon.try_cmd("query-block-jobs") or []}
        for job in self.jobs:
            if job in live:
                await self.mon.try_cmd("block-job-cancel", {"device": job, "force": True})
            elif self.jobs[job] not in ENDED:
                self.jobs[job] = "cancelled"
        try:
            await self.until(lambda: all(s in ENDED for s in self.jobs.values()), ROLLBACK_TIMEOUT, "the mirrors to stop")
        except KvmError:
            pass
        for node in self.nodes:
            await self.mon.try_cmd("blockdev-del", {"node-name": node})
        status = await self.mon.try_cmd("query-status") or {}
        if was_running and status.get("running") is False and status.get("status") not in ("postmigrate", "inmigrate"):
            await self.mon.try_cmd("cont")
        return self.migration


async def settle_earlier_run(mon: qmp.Monitor, listener: Any) -> bool:
    """Undo what a kvm_migrate killed on this source left in QEMU; True when there was something.

    This run holds the instance's lock, so a migration under way, a mirror
    job or an NBD client node of ours belongs to a run that died (an SSH
    drop, a timeout). Left alone, the guest may stay paused at
    pre-switchover for ever and every retry fails on them. They are rolled
    back as a failed run would have done; a migration that completed means
    the instance already lives on the target, which a retry must not undo.
    """
    info = await mon.try_cmd("query-migrate") or {}
    status = info.get("status")
    if status == "completed":
        # On a QEMU that was itself a migration target, "completed" is its incoming migration: nothing of ours.
        # Only a source that sent the guest away is left postmigrate.
        runstate = await mon.try_cmd("query-status") or {}
        status = "completed" if runstate.get("status") == "postmigrate" else None
    if status == "completed":
        raise KvmError("an earlier migration of this instance completed (QEMU here is only its paused former copy): "
                       "confirm it on the target with kvm_instance state=incoming, then remove it here with state=absent",
                       "migrate")
    jobs = [str(j.get("device")) for j in await mon.try_cmd("query-block-jobs") or []
            if str(j.get("device", "")).startswith(storage.JOB_PREFIX)]
    nodes = [str(n.get("node-name")) for n in await mon.try_cmd("query-named-block-nodes", {"flat": True}) or []
             if str(n.get("node-name", "")).startswith(storage.NODE_PREFIX)]
    if status not in UNDER_WAY and not jobs and not nodes:
        return False
    leftover = Copy(mon, listener, [], "", 0)
    leftover.migration = status
    leftover.jobs = {job: "running" for job in jobs}
    leftover.nodes = sorted(set(nodes))
    await leftover.rollback(was_running=True)
    return True


async def _migrate(sock: str, uri: str, timeout: float, max_bandwidth_mib: int) -> dict[str, Any]:
    async with qmp.connect(sock) as mon:
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


async def _migrate_copy(sock: str, uri: str, target: uris.MigrationUri, nbd_port: int, disks: list[dict[str, Any]],
                        timeout: float, max_bandwidth_mib: int) -> dict[str, Any]:
    """The copy_storage migration (module docstring); the source keeps running on any failure."""
    async with qmp.connect(sock) as mon:
        with mon.events(("MIGRATION", *JOB_EVENTS)) as leftovers:
            await settle_earlier_run(mon, leftovers)
        was_running = bool((await mon.cmd("query-status", step="migrate setup"))["running"])
        await mon.cmd("migrate-set-capabilities", {"capabilities": capabilities(True)}, step="migrate setup")
        if max_bandwidth_mib:
            await mon.cmd("migrate-set-parameters", {"max-bandwidth": max_bandwidth_mib << 20}, step="migrate setup")
        with mon.events(("MIGRATION", *JOB_EVENTS)) as listener:
            copy = Copy(mon, listener, disks, target.host or "", nbd_port)
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
        result["storage"] = {"disks": [d["hvinfo"]["id"] for d in disks], "mirror_ready_ms": copy.ready_ms,
                             "nbd": f"{target.host}:{nbd_port}"}
        return result


def migrate(rd: RunDir, where: Paths, uri: str, timeout: float, max_bandwidth_mib: int,
            copy: tuple[uris.MigrationUri, int, list[str]] | None = None, remove_source_disks: bool = False) -> dict[str, Any]:
    """Migrate, then stop the source and remove its files (and, if asked, the copied disks); returns migration stats."""
    pid = process.running_pid(rd, where)
    found = runtime_file.load(rd, where.name)
    if not pid or found is None:
        raise KvmError(f"instance {where.name} is not running in {where.runtime_dir}")
    rt = lifecycle.settle_incoming(rd, where, found[0], pid, write=True)
    if copy is None:
        result = qmp.run(_migrate(where.qmp, uri, timeout, max_bandwidth_mib))
    else:
        result = qmp.run(_migrate_copy(where.qmp, uri, copy[0], copy[1], storage.copied_disks(rt, copy[2]), timeout, max_bandwidth_mib))
    if not process.wait_exit(pid, 30):
        process.stop_hard(rd, where)
    lifecycle.remove_all(rd, where)
    if copy is not None and remove_source_disks:
        result["removed_source_disks"] = remove_disks(storage.copied_disks(rt, copy[2]))
    return result


def remove_disks(disks: list[dict[str, Any]]) -> list[str]:
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


def apply(call: Call) -> dict[str, Any]:
    params = call.params
    target = uris.parse(params["target_uri"], "target_uri")
    copy_storage = params.get("copy_storage")
    if params.get("remove_source_disks") and not copy_storage:
        raise KvmError("remove_source_disks only goes with copy_storage (with shared storage the target uses the same files)")
    if copy_storage:
        if target.kind != "tcp":
            raise KvmError("copy_storage needs a tcp:HOST:PORT target_uri: the target exports the disks over NBD on that address")
        port = params.get("nbd_port")
        if not isinstance(port, int) or not 0 < port < 65536 or port == target.port:
            raise KvmError(f"nbd_port {port!r} must be a TCP port (1-65535) other than the migration port")
        storage.shared_prefixes(params.get("shared_dirs"))
    where = paths(params["runtime_dir"], params["name"])
    rd = open_rundir(where.runtime_dir, create=False)
    with rd:
        where = lifecycle.locate(rd, where)
        if call.check:
            if lifecycle.status(rd, where)[0] in ("stopped", "absent", "unknown"):
                raise KvmError(f"instance {where.name} is not running (or does not answer QMP) in {where.runtime_dir}")
            result: dict[str, Any] = {"changed": True, "target_uri": target.uri}
            if copy_storage:
                found = runtime_file.load(rd, where.name)
                result["copy_storage"] = [d["hvinfo"]["id"] for d in storage.copied_disks(found[0], params.get("shared_dirs"))] if found else []
            return result
        if rd.missing:
            raise KvmError(f"instance {where.name} is not running in {where.runtime_dir}")
        with rd.lock(where.name, keep_if=where.name + ".runtime.json"):
            copy = (target, params["nbd_port"], params.get("shared_dirs") or []) if copy_storage else None
            result = migrate(rd, where, target.uri, params["timeout"], params["max_bandwidth"], copy,
                             bool(params.get("remove_source_disks")))
    return {"changed": True, "target_uri": target.uri, "migration": result}
