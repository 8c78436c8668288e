# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_instance adopt={runtime, qmp, pidfile}``: take over a QEMU that something else (Ganeti) started.

Nothing in QEMU changes and it never restarts. The runtime file (any layout
the upgrader reads: Ganeti's, or this collection's own) is checked against
the live QEMU, and only when they agree is the instance recorded in the
runtime directory, with ``adopted`` naming that QEMU's QMP socket and pid
file (``ops.session.locate`` makes every later operation use them).

What must agree (every difference is listed in one error):

* the process: the pid file's process still runs and names that pid file on
  its command line (as QEMU's ``-pidfile`` does);
* name, uuid, memory and vcpus, where the runtime records them;
* every recorded disk and NIC: present under its id, same driver, same
  address (PCI slot, SCSI target), a disk backed by the recorded file; and
  no disk or NIC with an id that the runtime lacks (``drift.compare``);
* every device QEMU placed itself (``fixed``): a NIC with that MAC and
  driver, a disk backed by that file, among QEMU's id-less devices.

The hotplug window (``kvm_pci_reservations``) is raised above every slot
that a device without a recorded address holds, so a hotplug never aims
at a slot QEMU gave one of those: a file that predates the parameter (Ganeti
before 2.16) packs new devices right after them, like Ganeti 2.10-2.15 did.

A second run with the same ``adopt`` is ``changed: false``. Adoption of a
name that already has a runtime file here is refused.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import drift
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, locate, open_session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import public
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.read import notes as ganeti_notes
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import InstanceResult
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

KEYS = ("runtime", "qmp", "pidfile")
_CONTAINERS = ("/machine/peripheral-anon", "/machine/unattached")


def _spec(params: Mapping[str, Any]) -> dict[str, str]:
    spec = params["adopt"]
    if params["state"] != "running":
        raise KvmError("adopt takes over a running QEMU: use it with state=running")
    for key in ("disks", "nics", "hvparams"):
        if params.get(key):
            raise KvmError(f"adopt takes the instance as its runtime file and QEMU have it: leave out {key}")
    out = {}
    for key in KEYS:
        value = spec.get(key)
        if not isinstance(value, str) or not value.startswith("/") or any(ord(c) < 0x20 for c in value):
            raise KvmError(f"adopt.{key} {value!r} must be an absolute path")
        out[key] = os.path.normpath(value)
    return out


async def _live(mon: qmp.Monitor) -> dict[str, Any]:
    """Everything the comparison needs from QEMU, in two pipelined bursts."""
    names = ("query-name", "query-uuid", "query-pci", "query-block", "query-fdsets", "query-memory-size-summary",
             "query-cpus-fast")
    first: list[qmp.Command] = [(name, None) for name in names]
    first += [("qom-list", {"path": path}) for path in ("/machine/peripheral", *_CONTAINERS)]
    answers = await mon.batch(first)
    for answer in answers[:len(names) + 1]:
        if isinstance(answer, KvmError):
            raise answer.with_step("adopt")
    live = dict(zip(names, answers, strict=False))
    live["present"] = query.peripherals(answers[len(names)])
    anonymous = {}
    for path, answer in zip(_CONTAINERS, answers[len(names) + 1:], strict=True):
        if not isinstance(answer, KvmError):
            anonymous.update({f"{path}/{dev}": kind for dev, kind in query.peripherals(answer).items()
                              if kind in hvp.NIC_DRIVERS.values()})
    asks = drift.placement_questions(live["present"])
    gets: list[qmp.Command] = [("qom-get", {"path": path, "property": "mac"}) for path in anonymous]
    gets += [("qom-get", {"path": path, "property": prop}) for _id, prop, path in asks]
    got = await mon.batch(gets) if gets else []
    live["anon_nics"] = [(kind, got[pos]) for pos, kind in enumerate(anonymous.values()) if isinstance(got[pos], str)]
    placed: dict[str, dict[str, Any]] = {}
    for (dev_id, prop, _path), value in zip(asks, got[len(anonymous):], strict=True):
        if not isinstance(value, KvmError):
            placed.setdefault(dev_id, {})["bus" if prop == "parent_bus" else prop] = \
                query.bus_name(value) if prop == "parent_bus" else value
    live["placed"] = placed
    return live


def _window(rt: Runtime, live: Mapping[str, Any]) -> tuple[int, int]:
    """(the recorded first hotplug slot, the one the adopted layout needs)."""
    # devices the runtime gives an address; QEMU placed everything else (a Ganeti SCSI controller too)
    recorded = {info["id"] for info in kinds.all_hvinfo(rt) if "addr" in info}
    taken = [dev["slot"] for bus in live["query-pci"] if bus.get("bus") == 0 for dev in bus.get("devices", [])
             if dev.get("qdev_id") not in recorded]
    top = max(taken, default=hvp.MIN_PCI_RESERVATIONS - 1) + 1
    have = rt["hvparams"]["kvm_pci_reservations"]
    meta = rt.get("ganeti") or {}
    floor = hvp.MIN_PCI_RESERVATIONS if meta.get("reservations_default") else have
    return have, min(max(floor, top, hvp.MIN_PCI_RESERVATIONS), hvp.PCI_LAST_SLOT + 1)


def compare(rt: Runtime, pid: int, live: Mapping[str, Any]) -> list[str]:
    """Every difference between the runtime and the live QEMU (empty when they agree)."""
    problems: list[str] = []
    name = (live.get("query-name") or {}).get("name")
    if rt.get("name") and name is not None and name.split(",")[0] != rt["name"]:
        problems.append(f"QEMU is named {name!r}, the runtime says {rt['name']!r}")
    uuid = str((live.get("query-uuid") or {}).get("UUID") or "")
    if rt.get("uuid") and uuid.lower() != str(rt["uuid"]).lower():
        problems.append(f"QEMU has uuid {uuid or 'none'}, the runtime says {rt['uuid']}")
    memory = (live.get("query-memory-size-summary") or {}).get("base-memory")
    if rt.get("memory") and isinstance(memory, int) and memory >> 20 != rt["memory"]:
        problems.append(f"QEMU has {memory >> 20} MiB of memory, the runtime says {rt['memory']}")
    cpus = live.get("query-cpus-fast")
    if rt.get("vcpus") and isinstance(cpus, list) and len(cpus) != rt["vcpus"]:
        problems.append(f"QEMU has {len(cpus)} vcpus, the runtime says {rt['vcpus']}")
    blocks = query.blocks_by_device(live["query-block"])
    problems += drift.compare(rt, pid, live["present"], live["placed"], query.pci_devices(live["query-pci"]),
                              blocks, query.fdset_fds(live["query-fdsets"]))
    anon_nics = list(live["anon_nics"])
    for dev in rt.get("fixed", []):
        if dev["kind"] == "nic":
            match = (dev["driver"], dev["mac"])
            if match in anon_nics:
                anon_nics.remove(match)
            else:
                problems.append(f"nic {dev['mac']} ({dev['driver']}, placed by QEMU): QEMU has no such NIC without an id")
    problems += [f"QEMU has {kind} {mac} without an id, missing from the runtime" for kind, mac in anon_nics]
    recorded = {d["hvinfo"]["id"] for kind in kinds.KINDS for d in kind.records(rt)}
    files = [(b, (b.get("inserted") or {}).get("file")) for b in live["query-block"]
             if b.get("inserted") and query.qdev_id(b.get("qdev")) not in recorded]
    kvm_cmd = " ".join(rt["kvm_cmd"])
    for dev in rt.get("fixed", []):
        if dev["kind"] == "disk":
            path = dev.get("path")
            backed = next((pair for pair in files
                           if pair[1] == path or (path is not None and drift.same_file(pair[1] or "", path) is True)), None)
            if backed is None:
                problems.append(f"disk {dev['path']} (placed by QEMU): QEMU has no disk backed by it")
            else:
                files.remove(backed)
    problems += [f"QEMU has disk {name} ({block.get('device') or block.get('qdev')}), missing from the runtime"
                 for block, name in files if not block.get("removable") and name and name not in kvm_cmd]
    return problems


async def _result(session: Session, changed: bool, rt: Runtime, spec: dict[str, str], notes: list[str]) -> InstanceResult:
    state, pid = await session.status()
    return {"changed": changed, "pending": [], "recovered": False, "adopted": spec, "notes": notes,
            "instance": public(session, rt, state, pid)}


async def adopt(session: Session, spec: dict[str, str]) -> InstanceResult:
    call = session.call
    rt = session.load()
    if rt is not None:
        if rt.get("adopted") and {k: rt["adopted"].get(k) for k in KEYS} == spec:
            session.where = locate(session.where, rt)  # with the start time recorded at adoption
            if not session.pid():
                raise KvmError(f"instance {session.name} was adopted from {spec['pidfile']}, whose QEMU no longer runs; "
                               "start it with state=running (without adopt) or remove it with state=absent")
            return await _result(session, False, rt, spec, ganeti_notes(dict(rt)))
        raise KvmError(f"instance {session.name} already has a runtime file in {session.where.runtime_dir}; "
                       "remove it first (state=absent) or adopt under another name")
    rt, _version = runtime_file.read_path(spec["runtime"])
    session.where = Paths(session.where.runtime_dir, session.name, spec["qmp"], spec["pidfile"])
    pid = session.pid()
    if not pid:
        raise KvmError(f"adopt: no QEMU runs for pid file {spec['pidfile']} (its process must name that pid file "
                       "on its command line, as QEMU's -pidfile does)")
    live = await _live(await session.monitor())
    have, need = _window(rt, live)
    notes = ganeti_notes(dict(rt))
    if need != have:
        rt["hvparams"]["kvm_pci_reservations"] = need
        notes.append(f"hotplug window moved from slot {have:#04x} to {need:#04x}: QEMU placed devices up to {need - 1:#04x}")
    problems = compare(rt, pid, live)
    if problems:
        raise KvmError(f"adopt: runtime file {spec['runtime']} does not match the QEMU running as pid {pid}: "
                       + "; ".join(problems))
    rt.pop("mark", None)
    rt["name"] = session.name
    rt["adopted"] = {"runtime": spec["runtime"], "qmp": spec["qmp"], "pidfile": spec["pidfile"],
                     "started": process.starttime(pid)}  # a later pid reuse is never taken for this QEMU
    session.save(rt)
    result = await _result(session, True, rt, spec, notes)
    if call.diff:
        result["diff"] = {"before": {}, "after": {"adopted": spec, "pid": pid}}
    return result


async def apply(call: Call) -> InstanceResult:
    """The whole ``kvm_instance adopt=`` call, in one session on the instance."""
    spec = _spec(call.params)
    async with open_session(call, call.params["name"], create=True) as session:
        return await adopt(session, spec)
