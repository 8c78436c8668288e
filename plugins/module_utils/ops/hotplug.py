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

from typing import Any, Mapping, TypeAlias

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, fixed, kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine, media
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import transaction as tx
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DeviceKind, Kind
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, open_session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.target import settle_incoming
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import Diff, HotplugResult
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

Outcome: TypeAlias = "tuple[bool, Mapping[str, Any] | None, Diff | None]"  # (changed, the device, the diff when changed)


def new_record(kind: DeviceKind, spec: Mapping[str, Any], rt: Runtime, name: str) -> Mapping[str, Any]:
    """The runtime record a request describes (validated; not yet placed)."""
    return kind.new_record(spec, devices.instance_uuid(name, rt.get("uuid")))


async def load_running(session: Session) -> Runtime:
    """The runtime of a running instance; a migration target whose guest arrived is confirmed first."""
    rt = session.load()
    if rt is None:
        raise KvmError(f"instance {session.name} has no runtime file in {session.where.runtime_dir}")
    pid = session.pid()
    if not pid:
        raise KvmError(f"instance {session.name} is not running; hotplug needs a running QEMU (start it with kvm_instance)")
    return await settle_incoming(session, rt, pid)


class HotplugOp:
    """One kvm_disk_hotplug / kvm_nic_hotplug call on an open session."""

    def __init__(self, session: Session, kind: DeviceKind, spec: Mapping[str, Any]) -> None:
        self.session, self.call, self.kind, self.spec = session, session.call, kind, spec
        self.timeout = float(self.call.params["unplug_timeout"])

    async def _settled(self) -> tuple[Runtime, bool]:
        """The running instance's runtime once a journal a killed run left is settled (not in check mode)."""
        rt = await load_running(self.session)
        if self.call.check:
            return rt, False
        return await tx.settle_journal(self.session, await self.session.monitor(), rt, self.timeout)

    async def present(self) -> Outcome:
        rt, settled = await self._settled()
        key, value = self.kind.identity(self.spec)
        found = tx.find(self.kind.records(rt), key, value)
        if found is not None:
            asked = self.kind.asked(self.spec)
            differs = self.kind.mismatch(found, {**found, **asked})
            if media.medium_change(found, differs):
                return await self._change_medium(rt, found, asked)
            if differs:
                raise KvmError(f"{self.kind.noun} {found['hvinfo']['id']} is plugged with {', '.join(differs)}; "
                               "unplug it first (state=absent) to plug it again with other properties")
            mon = await self.session.monitor()
            if found["hvinfo"]["id"] in query.peripherals(await mon.cmd("qom-list", {"path": "/machine/peripheral"})):
                return settled, found, None
            self.call.warn(f"QEMU had lost {found['hvinfo']['id']}; "
                           + ("it would be plugged again" if self.call.check else "plugged it again") + " at its recorded address")
            if not self.call.check:
                await engine.replug(mon, Item(self.kind.name, dict(found)), rt["hvparams"], self.timeout)
            return True, found, None
        if fixed.find(rt, self.kind, key, value) is not None:
            # there, placed by QEMU (read from Ganeti): present, but not ours to plug
            self.call.warn(f"{self.kind.noun} {value} is one QEMU placed itself (fixed): present, not hotpluggable")
            return settled, None, None
        wanted = new_record(self.kind, self.spec, rt, self.session.name)
        key, what = self.kind.claim(wanted)
        if wanted.get(key) and fixed.find(rt, self.kind, key, wanted[key]) is not None:
            raise KvmError(f"{self.kind.noun} {wanted[key]} is already used by a device QEMU placed itself in {self.session.name}")
        clash = tx.find(self.kind.records(rt), key, wanted[key]) if wanted.get(key) else None
        if clash is not None:
            raise KvmError(f"{what} is already used by {clash['hvinfo']['id']} of {self.session.name} (another uuid)")
        items = tx.place(construct.bus_state(rt), self.kind, wanted)
        record = items[-1].record
        after = tx.with_items(rt, items)
        diff: Diff = {"before": tx.layout(rt), "after": tx.layout(after)}
        if not self.call.check:
            await tx.commit_add(self.session, await self.session.monitor(), rt, items, self.timeout)
        return True, record, diff

    async def _change_medium(self, rt: Runtime, cd: Mapping[str, Any], asked: Mapping[str, Any]) -> Outcome:
        """A scsi-cd asked with another image: its medium changes live."""
        after = runtime_file.copy(rt)
        changed = next(d for d in after["disks"] if d["uuid"] == cd["uuid"])
        media.put(changed, media.medium(asked, cd))
        diff: Diff = {"before": f"{cd['hvinfo']['id']} medium {cd.get('path') or cd.get('uri')}\n",
                      "after": f"{cd['hvinfo']['id']} medium {changed['path'] or changed['uri']}\n"}
        if not self.call.check:
            try:
                await media.change(await self.session.monitor(), cd, changed, rt["hvparams"])
            except media.MediumLost:
                self.session.save(media.emptied(rt, cd))  # what QEMU has now
                raise
            self.session.save(after)
        return True, dict(changed), diff

    async def absent(self) -> Outcome:
        rt, settled = await self._settled()
        key, value = self.kind.identity(self.spec)
        found = tx.find(self.kind.records(rt), key, value)
        if found is None and fixed.find(rt, self.kind, key, value) is not None:
            raise KvmError(f"{self.kind.noun} {value} was placed by QEMU itself (fixed, read from Ganeti) and cannot be "
                           "unplugged; stop the instance and start it without it")
        if found is None:
            return settled, None, None
        after = runtime_file.copy(rt)
        self.kind.set_records(after, [rec for rec in self.kind.records(after) if rec["uuid"] != found["uuid"]])
        diff: Diff = {"before": tx.layout(rt), "after": tx.layout(after)}
        if self.call.check:
            return True, found, diff
        _gone, stuck = await engine.unplug(await self.session.monitor(), [Item(self.kind.name, dict(found))], self.timeout)
        if stuck:
            raise stuck[0][1]
        try:
            self.session.save(after)
        except KvmError as err:
            raise KvmError(f"{err.msg}; QEMU already released {found['hvinfo']['id']}: run again to finish", "save") from None
        return True, found, diff


async def apply(call: Call, kind: Kind, option: str) -> HotplugResult:
    """The whole kvm_disk_hotplug / kvm_nic_hotplug call, in one session on the instance."""
    spec = {k: v for k, v in (call.params[option] or {}).items() if v is not None}
    device_kind = kinds.BY_NAME[kind]
    device_kind.identity(spec)  # bad input fails before anything is opened or locked
    async with open_session(call, call.params["instance"]) as session:
        if session.rd.missing or session.load() is None:
            raise KvmError(f"instance {session.name} has no runtime file in {session.where.runtime_dir}")
        op = HotplugOp(session, device_kind, spec)
        changed, rec, diff = await (op.present() if call.params["state"] == "present" else op.absent())
    result: HotplugResult = {"changed": changed, "device": devices.public(rec) if rec else None}
    if call.diff and changed and diff:
        result["diff"] = diff
    return result
