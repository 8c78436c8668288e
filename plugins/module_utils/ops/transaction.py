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

from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item, PlugFailed
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime, records

# What must match for a request to be the device already plugged.
PROPERTIES = {"disks": ("path", "uri", "format", "mode", "type"), "nics": ("mac", "network")}


def find(recs: list[Any], key: str, value: Any) -> dict[str, Any] | None:
    return next((rec for rec in recs if rec.get(key) == value), None)


def identity(kind: str, spec: dict[str, Any]) -> tuple[str, Any]:
    """(key, value) that identifies a device: its uuid when given, else path / mac."""
    if spec.get("uuid"):
        return "uuid", hvi.check_uuid(spec["uuid"])
    if kind == "disks":
        for key in ("path", "uri"):
            if spec.get(key):
                return key, spec[key]
        raise KvmError("disk needs a 'uuid', a 'path' or a 'uri' to be identified")
    if not spec.get("mac"):
        raise KvmError("nic needs a 'uuid' or a 'mac' to be identified")
    return "mac", str(spec["mac"]).lower()


def asked_properties(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The identity-independent properties a request states, normalised like a record."""
    asked: dict[str, Any] = {}
    if kind == "disks":
        asked.update({k: spec[k] for k in PROPERTIES[kind] if k in spec})
        if "type" in asked:
            asked["type"] = hvp.DISK_TYPE_ALIASES.get(asked["type"], asked["type"])
        return asked
    if "mac" in spec:
        asked["mac"] = str(spec["mac"]).lower()
    if "network" in spec:
        asked["network"] = devices.network_record(spec["network"])
    return asked


def mismatch(kind: str, found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The properties in which the plugged device differs from the request."""
    return [f"{key} {found.get(key)!r} (asked: {wanted.get(key)!r})" for key in PROPERTIES[kind] if found.get(key) != wanted.get(key)]


def place(state: allocator.BusState, kind: str, record: dict[str, Any], hvparams: dict[str, Any]) -> list[Item]:
    """The items that plug a new device into ``state`` (which the allocator updates): the SCSI controller it
    needs first, if any, then the device with its hvinfo. A disk gets its type (the instance's ``disk_type``
    unless it names one); an IDE disk is refused (QEMU's IDE bus has no hotplug)."""
    if kind == "nics":
        return [Item(kind, {**record, "hvinfo": allocator.place_nic(state, record)})]
    placed = {**record, "type": allocator.disk_type(record, hvparams)}
    if placed["type"] == "ide":
        raise KvmError(f"disk {record.get('path') or record.get('uri')}: ide disks cannot be hotplugged (QEMU's IDE bus "
                       "has no hotplug); use a SCSI or paravirtual type, or add it at the next start")
    info, controllers = allocator.place_disk(state, placed)
    return [Item("controllers", dict(c)) for c in controllers] + [Item(kind, {**placed, "hvinfo": info})]


def with_items(rt: Runtime, items: list[Item]) -> Runtime:
    """A copy of ``rt`` that records ``items`` too (``rt`` is not changed)."""
    result = runtime_file.copy(rt)
    for item in items:
        result.setdefault(item.kind, []).append(item.record)  # type: ignore[misc]
    return result


def layout(rt: Runtime) -> str:
    """The device layout as diff mode shows it, one device per line."""
    lines = [f"{dev['hvinfo']['id']} {dev['hvinfo']['driver']} {hvi.where(dev['hvinfo'])}"
             for kind in ("controllers", "disks", "nics") for dev in records(rt, kind)]
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
    known = {dev["hvinfo"]["id"] for kind in ("controllers", "disks", "nics") for dev in records(rt, kind)}
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
