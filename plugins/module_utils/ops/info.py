# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm_instance_info``: the runtime, the bus state, liveness and drift.

Drift compares every device both ways, on the read-only monitor (so it
answers while a hotplug or migration holds the control monitor): for each
device the runtime records, whether QEMU has it, with the same driver, at
the same address, backed by the same file (the descriptor QEMU holds is
compared with the recorded path by device and inode); and every disk or
NIC QEMU has that the runtime does not record.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.drift import drift
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, attach
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.export import export as export_ganeti
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.read import notes as ganeti_notes
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import NAME_RE, RUNTIME_SUFFIX, RunDir, list_names, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import Diff, InfoResult, InstanceReport
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, Runtime

# export name -> the downgrade that writes it (refusing, with the reason, what it cannot hold)
# layout -> export(runtime, QEMU alive); ganeti-2/ganeti-3 are Ganeti 2.10-2.15's and 2.16-3.1's layouts
EXPORTS: dict[str, Callable[[Runtime, bool], object]] = {
    "runtime-v1": lambda rt, _alive: upgrade.to_v1(rt),
    "legacy": lambda rt, _alive: upgrade.to_legacy(rt),
    "ganeti-2": lambda rt, alive: export_ganeti(dict(rt), "2", running=alive),
    "ganeti-3": lambda rt, alive: export_ganeti(dict(rt), "3", running=alive),
}


async def _disk_sizes(mon: qmp.Monitor, rt: Runtime) -> dict[str, int]:
    blocks = query.blocks_by_device(await mon.cmd("query-block", step="disk sizes"))
    sizes = {}
    for disk in rt["disks"]:
        image = ((blocks.get(disk["hvinfo"]["id"]) or {}).get("inserted") or {}).get("image") or {}
        if isinstance(image.get("virtual-size"), int):
            sizes[disk["uuid"]] = image["virtual-size"]
    return sizes


async def describe(path: str, rt: Runtime, version: int, session: Session | None) -> InstanceReport:
    """One instance as the module returns it (``session`` is None for a file outside a runtime directory)."""
    pid = session.pid() if session is not None else None
    status = "alive" if pid else "down"
    if rt.get("mark") == INCOMING:
        status = "incoming" if pid else "incoming-failed"
    elif rt.get("mark") == "stopped" and not pid:
        status = "stopped"
    report: InstanceReport = {
        "name": rt.get("name") or (session.name if session else None),
        "runtime_file": path,
        "format_version": version,
        "current_version": FORMAT_VERSION,
        "runtime": rt,
        "bus": allocator.describe(construct.bus_state(rt)),
        "alive": pid is not None,
        "pid": pid,
        "status": status,
        "qmp_socket": session.where.qmp if session else None,
        "interrupted_hotplugs": [rec["hvinfo"]["id"] for _k, rec in journal.read(session.rd, session.where)] if session else [],
        "drift": [],
        "notes": ganeti_notes(dict(rt)),  # what reading a Ganeti runtime changed or assumed
        "disk_sizes": {},
    }
    if pid is not None and session is not None:
        mon = await session.monitor()
        report["drift"] = await drift(mon, rt, pid)
        # Each disk's virtual size as QEMU sees it: what a copy_storage target creates.
        report["disk_sizes"] = await _disk_sizes(mon, rt)
    return report


def _instance_of(path: str) -> tuple[str, str] | None:
    """(directory, instance name) when ``path`` follows the runtime file naming."""
    base = os.path.basename(path)
    name = base[: -len(RUNTIME_SUFFIX)] if base.endswith(RUNTIME_SUFFIX) else ""
    return (os.path.dirname(os.path.abspath(path)), name) if NAME_RE.match(name) else None


def _upgrade_in_place(path: str, check: bool) -> None:
    """Write ``path`` back in the current format, atomically, in a trusted directory, under a lock.

    A file named like a runtime file is locked with its instance lock; any
    other file with a lock on its directory, so no lock file is left beside it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    rd = RunDir.open(directory, create=False)
    if rd is None:
        raise KvmError(f"directory {directory} does not exist")
    if check:
        rd.close()
        return
    with rd:
        owned = _instance_of(path)
        lock = rd.lock(owned[1], keep_if=os.path.basename(path)) if owned else rd.lock_dir()
        with lock:
            rt, _version = runtime_file.read_path(path)
            rd.write_atomic(os.path.basename(path), runtime_file.dumps(rt))


async def _one(call: Call, path: str, rd: RunDir | None, name: str | None) -> tuple[InstanceReport, Diff | None]:
    """The report of one runtime file, upgraded in place first if asked; ``changed`` and ``diff`` on the side."""
    params = call.params
    found: tuple[Runtime, int] | None
    async with contextlib.AsyncExitStack() as stack:
        session = None
        if rd is not None and name is not None:
            session = await stack.enter_async_context(attach(call, rd, paths(rd.path, name), writer=False))
            loaded = session.load()  # read once: the session already read it to locate the instance
            if loaded is None or session.stored_version is None:
                raise KvmError(f"runtime file {path} does not exist")
            found = (loaded, session.stored_version)
        else:
            found = runtime_file.read_path(path)
        rt, version = found
        upgraded: Diff | None = None
        if params["upgrade"] and version < rt["version"]:
            upgraded = {"before": f"{path}: format version {version}\n", "after": f"{path}: format version {rt['version']}\n"}
            _upgrade_in_place(path, call.check)
            if not call.check:
                version = rt["version"]
        report = await describe(path, rt, version, session)
    if params.get("export"):  # refused with the reason when the devices do not fit the layout
        report["exported"] = EXPORTS[params["export"]](rt, report["alive"])
    return report, upgraded


async def apply(call: Call) -> InfoResult:
    """The whole kvm_instance_info call: one read-only session per instance it reports."""
    params = call.params
    if params["path"]:
        owned = _instance_of(params["path"])
        rd = RunDir.open(owned[0], create=False) if owned else None
        names: list[str | None] = [owned[1] if owned and rd is not None else None]
        files = [params["path"]]
    else:
        rd = open_rundir(params["runtime_dir"], create=False)
        listed = [params["name"]] if params["name"] else list_names(rd.listdir())
        names, files = list(listed), [paths(params["runtime_dir"], n).runtime for n in listed]
    with rd if rd is not None else contextlib.nullcontext():
        done = [await _one(call, path, rd, name) for path, name in zip(files, names, strict=True)]
    reports = [report for report, _diff in done]
    diffs = [diff for _report, diff in done if diff]
    result: InfoResult = {"changed": bool(diffs), "instances": reports}
    if len(files) == 1 and (params["name"] or params["path"]):
        result["instance"] = reports[0]
    if call.diff and diffs:
        result["diff"] = diffs
    return result
