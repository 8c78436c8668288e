# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_instance``: make an instance running, stopped, absent or a migration target.

A stopped instance keeps its runtime file marked ``stopped``; starting it
again reuses every recorded hvinfo, so all devices keep their addresses. A
runtime file without a mark and without a live QEMU means QEMU died behind
our back: ``running`` restarts it from the file and reports ``recovered``.
A runtime file marked ``incoming`` belongs to a migration target
(``ops.incoming``): once QEMU there runs the migrated guest the mark is
dropped; if that QEMU is gone the migration failed and the instance lives on
the source, so nothing here ever boots a second copy of it.

A copy_storage target records the images it created (``created_images``)
while it is marked incoming: ``absent`` then removes exactly those images,
unless the guest already runs here (the images hold its disks). ``absent``
with ``only_if_incoming`` is the rollback of a failed migration: it removes
the instance only while it is such a target (marked incoming, QEMU gone or
still waiting) and leaves anything else alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, hvparams, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import spec as specs
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import converge, storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import transaction as tx
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, open_session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import public, start
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.stop import remove_all, stop
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.target import arrived, settle_incoming
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host, process
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import Instance, InstanceDetails, InstanceResult
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, STOPPED, Controller, Runtime

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11: module_utils also run on 3.10


def plan_runtime(spec: specs.Spec, binary: str, old: Runtime | None = None, warn: Any = None) -> Runtime:
    """The runtime a start of ``spec`` would write (reusing ``old``'s controllers and addresses)."""
    disks = [d.copy() for d in spec["disks"]]
    nics = [n.copy() for n in spec["nics"]]
    controllers: list[Controller] = []
    if old:
        controllers = specs.kept_controllers(old, spec["hvparams"])
        buses = {hvparams.root_bus(spec["hvparams"])} | {b for b, _u in hvparams.IDE_SLOTS}
        buses |= {c["hvinfo"]["id"] if c["kind"] != "scsi" else allocator.scsi_bus_of(c["hvinfo"]["id"]) for c in controllers}
        disks = specs.merge_devices(old["disks"], disks, spec["hvparams"], kinds.DISKS, buses)
        nics = specs.merge_devices(old["nics"], nics, spec["hvparams"], kinds.NICS, buses)
    return construct.new_runtime(spec["name"], spec["uuid"], spec["memory"], spec["vcpus"], spec["hvparams"], binary,
                                 disks, nics, controllers, warn)


async def result_of(session: Session, changed: bool, rt: Runtime | None, before: Any = None, after: Any = None,
                    **extra: Unpack[InstanceDetails]) -> InstanceResult:
    """What ``kvm_instance`` returns: the instance as it is now, the diff if asked and something changed."""
    call = session.call
    state, pid = await session.status()
    if rt is not None and rt.get("mark") == INCOMING and pid is None:
        state = "incoming-failed"
    instance: Instance
    if rt is not None:
        instance = public(session, rt, state, pid)
    else:
        uuid = devices.instance_uuid(session.name, call.params.get("uuid"))
        where = session.where
        instance = {"name": session.name, "uuid": uuid, "status": state, "pid": pid, "qmp_socket": where.qmp,
                    "runtime_file": where.runtime, "serial_log": where.serial, "disks": [], "nics": [], "cmdline": []}
    result: InstanceResult = {"changed": changed, "pending": [], "recovered": False, **extra, "instance": instance}
    if call.diff and changed:
        result["diff"] = {"before": before or {}, "after": after or {}}
    return result


class InstanceOp:
    """One kvm_instance call (running, stopped, absent) on an open session; each state honours check mode."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.call = session.call
        self.params = session.call.params
        self.check = session.call.check

    async def _not_a_former_copy(self, pid: int | None) -> None:
        """A QEMU left ``postmigrate`` by a migration that completed is no guest: it must never be run or stopped into a
        second copy (a kvm_migrate killed before it removed the source leaves one)."""
        if pid and (await self.session.status())[0] == "postmigrate":
            raise KvmError(f"instance {self.session.name} here is the former copy of a migration that completed (QEMU is "
                           "postmigrate): the guest runs on the target; remove it here with state=absent")

    async def running(self) -> InstanceResult:
        session = self.session
        spec = specs.requested_spec(self.params)
        old = session.load()
        pid = session.pid()
        await self._not_a_former_copy(pid)
        if pid and old is None:
            raise KvmError(f"a QEMU (pid {pid}) runs for {session.name} without a runtime file; stop it first with state=stopped")
        if old is not None:
            old = await settle_incoming(session, old, pid)
        if pid and old is not None:
            return await self.converge(old, spec)
        recovered = old is not None and old.get("mark") != STOPPED
        if old is not None and recovered:
            # QEMU died behind our back: bring back exactly what ran (hotplugs included).
            planned = old
            pending, device_changes = specs.differences(old, spec)
            for note in pending + device_changes:
                self.call.warn(f"recovering from the runtime file; not applied: {note}")
        else:
            planned = plan_runtime(spec, self.params["qemu_binary"], old, self.call.warn)
        user = process.resolve_user(self.params["qemu_user"])
        for disk in planned["disks"]:
            host.check_disk(dict(disk), planned["hvparams"])
        before = specs.summary(old) if old else {}
        after = specs.summary(planned)
        if self.check:
            result = await result_of(session, True, planned, before, after, recovered=recovered)
            result["instance"]["status"] = "running"
            return result
        await start(session, planned, user, self.params["qemu_binary"])
        if recovered:
            self.call.warn(f"instance {session.name} had died; started it again from its runtime file")
        return await result_of(session, True, planned, before, after, recovered=recovered)

    async def converge(self, old: Runtime, spec: specs.Spec) -> InstanceResult:
        """A running instance: make its disks and NICs match the lists, live; the rest waits for a start.

        The journal of a killed run is settled first, then the plan is made
        once; the task reports that plan and carries out exactly it.
        """
        session = self.session
        pending = specs.differences(old, spec)[0]
        for note in pending:
            self.call.warn(f"{note} is pending: it takes effect at the next start")
        timeout = float(self.params["unplug_timeout"])
        mon = None
        settled = False
        if not self.check and session.rd.exists(session.where.names.journal):  # QMP only when there is a journal to settle
            mon = await session.monitor()
            old, settled = await tx.settle_journal(session, mon, old, timeout)
        the_plan = converge.plan(old, spec, bool(self.params.get("purge")))
        if the_plan.kept:
            self.call.warn(f"devices not in the lists were kept (purge: false): {', '.join(the_plan.kept)}")
        if the_plan.empty:
            return await result_of(session, settled, old, pending=pending, devices=the_plan.report())
        planned = converge.after(old, the_plan)
        before = tx.layout(old)
        if self.check:
            return await result_of(session, True, planned, before, tx.layout(planned), pending=pending, devices=the_plan.report())
        done = await converge.execute(session, mon or await session.monitor(), old, the_plan, spec, timeout)
        return await result_of(session, True, done, before, tx.layout(done), pending=pending, devices=the_plan.report())

    async def stopped(self) -> InstanceResult:
        session = self.session
        old = session.load()
        pid = session.pid()
        await self._not_a_former_copy(pid)
        if old is not None and old.get("mark") == INCOMING and pid is None:
            return await result_of(session, False, old)  # a failed migration target: nothing runs, nothing to mark
        if not pid:
            if old is None or old.get("mark") == STOPPED:
                return await result_of(session, False, old)
            old["mark"] = STOPPED  # QEMU died: it stays down until asked to run
            old.pop("adopted", None)  # a start runs this collection's own QEMU
            if not self.check:
                session.save(old)
                await stop(session, 0, graceful=False)  # plumbing, and a QEMU left without a pid file
            return await result_of(session, True, old, {"status": "died"}, {"status": "stopped"})
        if not self.check:
            await stop(session, self.params["shutdown_timeout"])
            if old is not None:
                old["mark"] = STOPPED
                old.pop("adopted", None)  # the adopted QEMU is gone; a start runs this collection's own
                session.save(old)
        return await result_of(session, True, old, {"status": "running"}, {"status": "stopped"})

    async def absent(self) -> InstanceResult:
        session = self.session
        old = None
        try:
            old = session.load()
        except KvmError:
            pass  # a damaged runtime file is removed all the same
        pid = session.pid()
        marked = old is not None and old.get("mark") == INCOMING
        came = await arrived(session) if marked else None
        exists = pid is not None or any(session.rd.exists(n) for n in session.where.all_names() if not n.endswith(".lock"))
        if self.params.get("only_if_incoming") and not (marked and came is False):
            if exists:
                why = ("it is not a migration target" if not marked else
                       "its migration arrived: the guest runs here" if came else "its QEMU does not answer")
                self.call.warn(f"only_if_incoming: instance {session.name} left alone here ({why})")
            return await result_of(session, False, old, removed_images=[])
        created = (old or {}).get("created_images") or [] if marked else []
        if created and came is not False:
            self.call.warn(f"instance {session.name}: kept the images this migration target created "
                           f"({', '.join(r['path'] for r in created)}): the guest ran here on them")
            created = []
        removed = storage.still_ours(created) if self.check else []
        if not self.check:
            await stop(session, 0, graceful=False)
            removed = storage.remove_created(created)  # before the runtime file: a retry still knows them
            remove_all(session)
        result = await result_of(session, exists or bool(removed), None, {"status": "present"}, {"status": "absent"},
                                 removed_images=removed)
        if old is not None:
            result["instance"]["uuid"] = old.get("uuid") or result["instance"]["uuid"]
            if self.check:
                result["instance"] = public(session, old, "absent", None)
        return result


async def apply(call: Call) -> InstanceResult:
    """The whole kvm_instance call (running, stopped, absent), in one session on the instance."""
    state = call.params["state"]
    if state == "running":
        specs.requested_spec(call.params)  # bad input fails before anything is created or locked
    async with open_session(call, call.params["name"], create=state == "running") as session:
        op = InstanceOp(session)
        handler = {"running": op.running, "stopped": op.stopped, "absent": op.absent}[state]
        return await handler()
