# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live convergence: make a running instance's disks and NICs match ``kvm_instance``'s lists.

The task states the devices the instance should have; this makes QEMU match
in two moves through the one hotplug engine:

* Unplugs (only with ``purge: true``) first, so the addresses they free are
  there for the adds, as a cold start would use them. All ``device_del``s
  go at once and their ``DEVICE_DELETED`` events are awaited together (with
  the repeat-while-silent of the hotplug modules), so ten unplugs take about
  as long as one. Reported per device: those that left are saved, those
  that did not stay recorded and the task fails naming them.
* Adds, in list order, at the addresses the allocator gives (holes first,
  SCSI controllers added when the ones there are full): journalled, handed
  over, sent in one pipelined burst with one verification, saved once.
  All or nothing: if any device fails, every device of the burst is
  removed again and the runtime file is unchanged.

A device whose identity matches but whose properties differ is an error,
except a ``scsi-cd``'s medium (path or uri, and its format), which changes live. Either way QEMU
and the runtime file agree afterwards.

The plan is made once, after the journal of a killed run is settled, and
``execute`` carries out exactly that plan: what the task reports is what
was done. Only when an unplug fails are the adds placed again, around the
device that stayed (and the task then fails naming it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DISKS, KINDS
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.spec import Spec
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine, media
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import transaction as tx
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import DeviceChanges
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime


@dataclass
class Plan:
    removes: list[Item] = field(default_factory=list)
    adds: list[Item] = field(default_factory=list)  # controllers first, then disks and NICs in list order
    media: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = field(default_factory=list)  # (recorded cd, wanted medium)
    kept: list[str] = field(default_factory=list)  # ids the lists lack, left alone without purge

    @property
    def empty(self) -> bool:
        return not (self.removes or self.adds or self.media)

    def report(self) -> DeviceChanges:
        return {
            "unplug": [{"id": i.id, "hvinfo": i.record["hvinfo"].copy()} for i in self.removes],
            "plug": [{"id": i.id, "hvinfo": i.record["hvinfo"].copy()} for i in self.adds],
            "media": [{"id": cd["hvinfo"]["id"], "path": want.get("path")} for cd, want in self.media],
            "kept": list(self.kept),
        }


def plan(rt: Runtime, spec: Spec, purge: bool) -> Plan:
    """What to unplug, plug and change (pure: the runtime is not changed)."""
    result = Plan()
    problems: list[str] = []
    remaining = runtime_file.copy(rt)
    for kind in KINDS:
        wanted = {dev["uuid"]: dev for dev in spec[kind.name]}
        for dev in kind.records(rt):
            if dev["uuid"] not in wanted:
                if purge:
                    result.removes.append(Item(kind.name, dict(dev)))
                else:
                    result.kept.append(dev["hvinfo"]["id"])
        kind.set_records(remaining, [d for d in kind.records(remaining) if not (purge and d["uuid"] not in wanted)])
        recorded = {dev["uuid"]: dev for dev in kind.records(rt)}
        for want in spec[kind.name]:
            have = recorded.get(want["uuid"])
            if have is None:
                continue
            differs = kind.mismatch(have, kind.wanted(want, rt["hvparams"]))
            if kind is DISKS and media.medium_change(have, differs):
                result.media.append((dict(have), want))
            elif differs:
                problems.append(f"{have['hvinfo']['id']} differs: {', '.join(differs)}")
    if problems:
        raise KvmError(f"{'; '.join(problems)}: these cannot change on a running instance (a scsi-cd's medium can); "
                       "unplug and plug them again, or change them at the next start")
    state = construct.bus_state(remaining)
    for kind in KINDS:
        known = {dev["uuid"] for dev in kind.records(rt)}
        for want in spec[kind.name]:
            if want["uuid"] in known:
                continue
            result.adds += tx.place(state, kind, dict(want))
    return result


def after(rt: Runtime, the_plan: Plan) -> Runtime:
    """The runtime once the plan is done."""
    result = runtime_file.copy(rt)
    gone = {item.id for item in the_plan.removes}
    for kind in KINDS:
        kind.set_records(result, [d for d in kind.records(result) if d["hvinfo"]["id"] not in gone])
    result = tx.with_items(result, the_plan.adds)
    for cd, want in the_plan.media:
        for disk in result["disks"]:
            if disk["uuid"] == cd["uuid"]:
                media.put(disk, media.medium(want, disk))
    return result


async def execute(session: Session, mon: qmp.Monitor, rt: Runtime, the_plan: Plan, spec: Spec,
                  timeout: float) -> Runtime:
    """Carry out ``the_plan`` (made by ``plan`` from ``rt`` and ``spec``); returns the runtime as saved.
    Unplugs first, media changes, then one burst of adds. If an unplug failed, the adds are placed again
    around the device that stayed (it keeps its address) and the task fails naming it afterwards."""
    current = rt
    failed: list[tuple[Item, KvmError]] = []
    if the_plan.removes:
        gone, failed = await engine.unplug(mon, the_plan.removes, timeout)
        current = after(current, Plan(removes=gone))
        if gone:
            session.save(current)
    for cd, want in the_plan.media:
        try:
            await media.change(mon, cd, want, current["hvparams"])
        except media.MediumLost:
            session.save(media.emptied(current, cd))  # what QEMU has now
            raise
        current = after(current, Plan(media=[(cd, want)]))
        session.save(current)
    adds = plan(current, spec, purge=False).adds if failed else the_plan.adds
    if adds:
        current = await tx.commit_add(session, mon, current, adds, timeout)
    if failed:
        names = ", ".join(f"{item.id} ({err.msg})" for item, err in failed)
        raise KvmError(f"these devices did not leave and stay recorded: {names}", "unplug")
    return current
