# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_disk_hotplug`` and ``kvm_nic_hotplug``: one device present or absent, truthfully.

Under the instance lock: settle a journal a killed run left, then compare the
request with the runtime file *and* with QEMU. ``present`` for a device the
runtime records but QEMU lost plugs it again at its recorded address; the
same identity with another path, format, mode or network is an error, never
"ok". A new device is journalled, plugged by the engine (verified, rolled
back on failure), then saved; a save that fails unplugs it again.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.common import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine, lifecycle, media
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item, PlugFailed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime, records

# What must match for a request to be the device already plugged.
PROPERTIES = {"disks": ("path", "uri", "format", "mode", "type"), "nics": ("mac", "network")}


def find(records: list[Any], key: str, value: Any) -> dict[str, Any] | None:
    return next((rec for rec in records if rec.get(key) == value), None)


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


def new_record(kind: str, spec: dict[str, Any], rt: Runtime, name: str) -> dict[str, Any]:
    """The runtime record a request describes (validated; not yet placed)."""
    inst_uuid = devices.instance_uuid(name, rt.get("uuid"))
    return devices.disk_record(spec, inst_uuid) if kind == "disks" else devices.nic_record(spec, inst_uuid)


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


def plan_add(rt: Runtime, kind: str, record: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The record with the hvinfo the allocator gives it, and the SCSI controller it needs first, if any.

    The runtime is not changed. A disk gets its type (the instance's
    ``disk_type`` unless it names one).
    """
    state = construct.bus_state(rt)
    if kind == "nics":
        return {**record, "hvinfo": allocator.place_nic(state, record)}, []
    placed = {**record, "type": allocator.disk_type(record, rt["hvparams"])}
    if placed["type"] == "ide":
        raise KvmError("ide disks cannot be hotplugged (QEMU's IDE bus has no hotplug); use a SCSI or paravirtual type")
    info, controllers = allocator.place_disk(state, placed)
    return {**placed, "hvinfo": info}, controllers


def layout(rt: Runtime) -> str:
    """The device layout as diff mode shows it, one device per line."""
    lines = [f"{dev['hvinfo']['id']} {dev['hvinfo']['driver']} {hvi.where(dev['hvinfo'])}"
             for kind in ("controllers", "disks", "nics") for dev in records(rt, kind)]
    return "\n".join(lines) + "\n"


def load_running(rd: RunDir, where: Paths, check: bool) -> Runtime:
    found = runtime_file.load(rd, where.name)
    if found is None:
        raise KvmError(f"instance {where.name} has no runtime file in {where.runtime_dir}")
    pid = process.running_pid(rd, where)
    if not pid:
        raise KvmError(f"instance {where.name} is not running; hotplug needs a running QEMU (start it with kvm_instance)")
    return lifecycle.settle_incoming(rd, where, found[0], pid, write=not check)


async def settle_journal(mon: qmp.Monitor, rd: RunDir, where: Paths, rt: Runtime, call: Call, timeout: float) -> bool:
    """Finish or undo what a killed writer left in QEMU, then drop its journal; True if QEMU or the runtime changed."""
    entries = journal.read(rd, where)
    if not entries:
        return False
    known = {dev["hvinfo"]["id"] for kind in ("controllers", "disks", "nics") for dev in records(rt, kind)}
    items = [Item(kind, rec) for kind, rec in entries if rec["hvinfo"]["id"] not in known]
    committed, removed = await engine.reconcile(mon, items, timeout) if items else ([], [])
    for item in committed:
        rt.setdefault(item.kind, []).append(item.record)  # type: ignore[misc]
    if committed:
        runtime_file.save(rd, where.name, rt)
    journal.clear(rd, where)
    for item in committed:
        call.warn(f"an interrupted hotplug of {item.id} had completed in QEMU; the runtime file records it now")
    for item in removed:
        call.warn(f"an interrupted hotplug of {item.id} left parts in QEMU; they were removed")
    return bool(committed or removed)


async def commit_add(mon: qmp.Monitor, rd: RunDir, where: Paths, before: Runtime, after: Runtime,
                     items: list[Item], timeout: float) -> None:
    """Journal, plug, save: the runtime file gets the devices only once QEMU has them all."""
    journal.write(rd, where, [(item.kind, item.record) for item in items])
    faults.point("journalled")
    try:
        await engine.plug(mon, items, before["hvparams"], timeout)
    except PlugFailed as err:
        if err.clean:
            journal.clear(rd, where)
        raise
    try:
        faults.point("before-save")
        runtime_file.save(rd, where.name, after)
    except KvmError as err:
        _gone, stuck = await engine.unplug(mon, items, timeout, "rollback")
        if stuck:
            raise KvmError(f"{err.msg}; the new device(s) could not be unplugged again, the next run reconciles them", "save") from None
        journal.clear(rd, where)
        raise KvmError(f"{err.msg}; the new device(s) were unplugged again, nothing changed", "save") from None
    faults.point("committed")
    journal.clear(rd, where)


class HotplugOp:
    def __init__(self, call: Call, rd: RunDir, where: Paths, kind: str, spec: dict[str, Any]) -> None:
        self.call, self.rd, self.where, self.kind, self.spec = call, rd, where, kind, spec
        self.timeout = float(call.params["unplug_timeout"])

    async def _present(self, mon: Any, rt: Runtime) -> tuple[bool, dict[str, Any] | None, dict[str, Any]]:
        settled = False if self.call.check else await settle_journal(mon, self.rd, self.where, rt, self.call, self.timeout)
        key, value = identity(self.kind, self.spec)
        found = find(rt[self.kind], key, value)  # type: ignore[literal-required]
        if found is not None:
            asked = asked_properties(self.kind, self.spec)
            differs = mismatch(self.kind, found, {**found, **asked})
            if media.medium_change(found, differs):
                return await self._change_medium(mon, rt, found, asked)
            if differs:
                raise KvmError(f"{self.kind[:-1]} {found['hvinfo']['id']} is plugged with {', '.join(differs)}; "
                               "unplug it first (state=absent) to plug it again with other properties")
            sock = self.where.qmp if mon is not None else lifecycle.query_socket(self.rd, self.where)
            present = await _has_device(mon, sock, found["hvinfo"]["id"])
            if present:
                return settled, found, {}
            self.call.warn(f"QEMU had lost {found['hvinfo']['id']}; "
                           + ("it would be plugged again" if self.call.check else "plugged it again") + " at its recorded address")
            if not self.call.check:
                await engine.replug(mon, Item(self.kind, found), rt["hvparams"], self.timeout)
            return True, found, {}
        placed = fixed.find(rt, self.kind, key, value)
        if placed is not None:  # there, placed by QEMU (read from Ganeti): present, but not ours to plug
            self.call.warn(f"{self.kind[:-1]} {value} is one QEMU placed itself (fixed): present, not hotpluggable")
            return settled, None, {}
        wanted = new_record(self.kind, self.spec, rt, self.where.name)
        key = "mac" if self.kind == "nics" else "path" if wanted.get("path") else "uri"
        clash = find(rt[self.kind], key, wanted[key]) if wanted.get(key) else None  # type: ignore[literal-required]
        if wanted.get(key) and fixed.find(rt, self.kind, key, wanted[key]) is not None:
            raise KvmError(f"{self.kind[:-1]} {wanted[key]} is already used by a device QEMU placed itself in {self.where.name}")
        if clash is not None:
            what = f"disk {wanted[key]}" if self.kind == "disks" else f"MAC {wanted['mac']}"
            raise KvmError(f"{what} is already used by {clash['hvinfo']['id']} of {self.where.name} (another uuid)")
        record, controllers = plan_add(rt, self.kind, wanted)
        after = runtime_file.copy(rt)
        after.setdefault("controllers", []).extend(controllers)
        after[self.kind].append(record)  # type: ignore[literal-required]
        diff = {"before": layout(rt), "after": layout(after)}
        if self.call.check:
            return True, record, diff
        items = [Item("controllers", dict(c)) for c in controllers] + [Item(self.kind, record)]
        await commit_add(mon, self.rd, self.where, rt, after, items, self.timeout)
        return True, record, diff

    async def _change_medium(self, mon: Any, rt: Runtime, cd: dict[str, Any], asked: dict[str, Any]) -> tuple[bool, dict[str, Any] | None, dict[str, Any]]:
        """A scsi-cd asked with another image: its medium changes live."""
        after = runtime_file.copy(rt)
        changed = next(d for d in after["disks"] if d["uuid"] == cd["uuid"])
        changed.update(media.medium(asked, cd))  # type: ignore[typeddict-item]
        diff = {"before": f"{cd['hvinfo']['id']} medium {cd.get('path') or cd.get('uri')}\n",
                "after": f"{cd['hvinfo']['id']} medium {changed['path'] or changed['uri']}\n"}
        if not self.call.check:
            try:
                await media.change(mon, cd, dict(changed), rt["hvparams"])
            except media.MediumLost:
                runtime_file.save(self.rd, self.where.name, media.emptied(rt, cd))  # what QEMU has now
                raise
            runtime_file.save(self.rd, self.where.name, after)
        return True, dict(changed), diff

    async def _absent(self, mon: Any, rt: Runtime) -> tuple[bool, dict[str, Any] | None, dict[str, Any]]:
        settled = False if self.call.check else await settle_journal(mon, self.rd, self.where, rt, self.call, self.timeout)
        key, value = identity(self.kind, self.spec)
        found = find(rt[self.kind], key, value)  # type: ignore[literal-required]
        if found is None and fixed.find(rt, self.kind, key, value) is not None:
            raise KvmError(f"{self.kind[:-1]} {value} was placed by QEMU itself (fixed, read from Ganeti) and cannot be "
                           "unplugged; stop the instance and start it without it")
        if found is None:
            return settled, None, {}
        after = runtime_file.copy(rt)
        after[self.kind] = [rec for rec in after[self.kind] if rec["uuid"] != found["uuid"]]  # type: ignore[literal-required]
        diff = {"before": layout(rt), "after": layout(after)}
        if self.call.check:
            return True, found, diff
        _gone, stuck = await engine.unplug(mon, [Item(self.kind, found)], self.timeout)
        if stuck:
            raise stuck[0][1]
        try:
            runtime_file.save(self.rd, self.where.name, after)
        except KvmError as err:
            raise KvmError(f"{err.msg}; QEMU already released {found['hvinfo']['id']}: run again to finish", "save") from None
        return True, found, diff

    async def run(self, state: str) -> tuple[bool, dict[str, Any] | None, dict[str, Any]]:
        rt = load_running(self.rd, self.where, self.call.check)
        handler = self._present if state == "present" else self._absent
        if self.call.check:
            return await handler(None, rt)
        async with qmp.connect(self.where.qmp) as mon:
            return await handler(mon, rt)


async def _has_device(mon: qmp.Monitor | None, sock: str, dev_id: str) -> bool:
    """Whether QEMU has a device ``dev_id`` (on the open monitor, or a short read-only connection)."""
    if mon is not None:
        return dev_id in query.peripherals(await mon.cmd("qom-list", {"path": "/machine/peripheral"}))
    async with qmp.connect(sock, timeout=5) as ro:
        return dev_id in query.peripherals(await ro.cmd("qom-list", {"path": "/machine/peripheral"}))


def apply(call: Call, kind: str, option: str) -> dict[str, Any]:
    """The whole kvm_disk_hotplug / kvm_nic_hotplug call, under the instance lock."""
    params = call.params
    where = paths(params["runtime_dir"], params["instance"])
    spec = {k: v for k, v in (params[option] or {}).items() if v is not None}
    identity(kind, spec)  # bad input fails before anything is opened or locked
    rd = open_rundir(where.runtime_dir, create=False)
    with rd:
        if rd.missing or not rd.exists(where.name + ".runtime.json"):
            raise KvmError(f"instance {where.name} has no runtime file in {where.runtime_dir}")
        op = HotplugOp(call, rd, lifecycle.locate(rd, where), kind, spec)
        if call.check:
            changed, rec, diff = qmp.run(op.run(params["state"]))
        else:
            with rd.lock(where.name, keep_if=where.name + ".runtime.json"):
                changed, rec, diff = qmp.run(op.run(params["state"]))
    result: dict[str, Any] = {"changed": changed, "device": devices.public(rec) if rec else None}
    if call.diff and changed and diff:
        result["diff"] = diff
    return result
