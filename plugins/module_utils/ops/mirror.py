# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source's side of a copy_storage migration: the mirror jobs, the switch-over, and the rollback.

``Copy`` keeps the state of the NBD client nodes, the mirror jobs and the
migration up to date from QMP events (``ops.migrate`` says how the steps
fit together); ``settle_earlier_run`` rolls back what a killed run left.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp

if TYPE_CHECKING:
    from qemu.qmp.events import EventListener

DONE = ("completed", "failed", "cancelled")
# Statuses in which a migration is still under way and migrate_cancel applies.
UNDER_WAY = ("setup", "active", "pre-switchover", "device", "wait-unplug")
JOB_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR")
ENDED = ("completed", "failed", "cancelled")
ROLLBACK_TIMEOUT = 30.0


class Copy:
    """The state of a copy_storage migration on the source, kept up to date from QMP events."""

    def __init__(self, mon: qmp.Monitor, listener: EventListener, disks: Sequence[Mapping[str, Any]], host: str, port: int) -> None:
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

    def feed(self, event: qmp.Event) -> None:
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

    def _fed(self, done: Callable[[], bool]) -> Callable[[qmp.Event], bool]:
        """An event predicate that records the event, then asks ``done()``."""
        def take(event: qmp.Event) -> bool:
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


async def settle_earlier_run(mon: qmp.Monitor, listener: EventListener) -> bool:
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
