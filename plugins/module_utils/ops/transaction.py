# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The steps every change of a running instance's devices is made of, in one place.

The hotplug modules and ``kvm_instance``'s live convergence share them:
which request is which device (identity, properties), where a new device
goes (the allocator over the runtime), settling the journal a killed run
left, and the add transaction (journal, plug through the engine, save; a
save that fails unplugs again). The layout string is what diff mode shows.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypeVar

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DeviceKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item, PlugFailed
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

R = TypeVar("R", bound=Mapping[str, Any])


def find(recs: Sequence[R], key: str, value: Any) -> R | None:
    return next((rec for rec in recs if rec.get(key) == value), None)


def place(state: allocator.BusState, kind: DeviceKind, record: Mapping[str, Any]) -> list[Item]:
    """The items that plug a new device into ``state`` (which the allocator updates): the SCSI controller it
    needs first, if any, then the device with its hvinfo."""
    placed, controllers = kind.place(state, record)
    return [Item("controllers", dict(c)) for c in controllers] + [Item(kind.name, placed)]


def with_items(rt: Runtime, items: list[Item]) -> Runtime:
    """A copy of ``rt`` that records ``items`` too (``rt`` is not changed)."""
    result = runtime_file.copy(rt)
    for item in items:
        kinds.append(result, item.kind, item.record)
    return result


def layout(rt: Runtime) -> str:
    """The device layout as diff mode shows it, one device per line."""
    lines = [f"{info['id']} {info['driver']} {hvi.where(info)}" for info in kinds.all_hvinfo(rt)]
    return "\n".join(lines) + "\n"


async def settle_journal(session: Session, mon: qmp.Monitor, rt: Runtime, timeout: float) -> tuple[Runtime, bool]:
    """Finish or undo what a killed writer left in QEMU, then drop its journal; (the runtime as it is now, changed).

    Devices that had completed in QEMU are committed to the runtime file
    (they were asked for and are exactly what was planned); partial ones are
    removed. The operator hears of both as warnings.
    """
    entries = journal.read(session.rd, session.where)
    if not entries:
        return rt, False
    known = {info["id"] for info in kinds.all_hvinfo(rt)}
    items = [Item(kind, rec) for kind, rec in entries if rec["hvinfo"]["id"] not in known]
    committed, removed = await engine.reconcile(mon, items, timeout) if items else ([], [])
    if committed:
        rt = with_items(rt, committed)
        session.save(rt)
    journal.clear(session.rd, session.where)
    for item in committed:
        session.call.warn(f"an interrupted hotplug of {item.id} had completed in QEMU; the runtime file records it now")
    for item in removed:
        session.call.warn(f"an interrupted hotplug of {item.id} left parts in QEMU; they were removed")
    return rt, bool(committed or removed)


async def commit_add(session: Session, mon: qmp.Monitor, before: Runtime, items: list[Item], timeout: float) -> Runtime:
    """Journal, plug, save: the runtime file gets the devices only once QEMU has them all. Returns the saved runtime."""
    after = with_items(before, items)
    journal.write(session.rd, session.where, [(item.kind, item.record) for item in items])
    faults.point("journalled")
    try:
        await engine.plug(mon, items, before["hvparams"], timeout)
    except PlugFailed as err:
        if err.clean:
            journal.clear(session.rd, session.where)
        raise
    try:
        faults.point("before-save")
        session.save(after)
    except KvmError as err:
        _gone, stuck = await engine.unplug(mon, items, timeout, "rollback")
        if stuck:
            raise KvmError(f"{err.msg}; the new device(s) could not be unplugged again, the next run reconciles them", "save") from None
        journal.clear(session.rd, session.where)
        raise KvmError(f"{err.msg}; the new device(s) were unplugged again, nothing changed", "save") from None
    faults.point("committed")
    journal.clear(session.rd, session.where)
    return after
