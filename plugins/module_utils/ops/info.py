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
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import lifecycle
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.lifecycle import INCOMING
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.export import export as export_ganeti
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.read import notes as ganeti_notes
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import NAME_RE, RUNTIME_SUFFIX, Paths, RunDir, list_names, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime, records

DEVICE_DRIVERS = hvp.PCI_DEVICE_DRIVERS | hvp.SCSI_DEVICE_DRIVERS | hvp.IDE_DEVICE_DRIVERS
# export name -> the downgrade that writes it (refusing, with the reason, what it cannot hold)
# layout -> export(runtime, QEMU alive); ganeti-2/ganeti-3 are Ganeti 2.10-2.15's and 2.16-3.1's layouts
EXPORTS: dict[str, Any] = {
    "runtime-v1": lambda rt, _alive: upgrade.to_v1(rt),
    "legacy": lambda rt, _alive: upgrade.to_legacy(rt),
    "ganeti-2": lambda rt, alive: export_ganeti(dict(rt), "2", running=alive),
    "ganeti-3": lambda rt, alive: export_ganeti(dict(rt), "3", running=alive),
}


def _same_file(a: str, b: str) -> bool | None:
    """Whether two paths are the same file (device and inode); None if either cannot be read."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return None
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _backing(block: dict[str, Any], pid: int, fdsets: dict[int, list[int]]) -> str | None:
    """A path naming the file QEMU really uses for a disk (its descriptor in /proc), if known."""
    name = (block.get("inserted") or {}).get("file") or ""
    if name.startswith("/dev/fdset/"):
        fds = fdsets.get(int(name.rsplit("/", 1)[1]), [])
        return f"/proc/{pid}/fd/{fds[0]}" if fds else None
    return name or None


def placement_questions(present: dict[str, str]) -> list[tuple[str, str, str]]:
    """(device id, property, qom path) to ask for every device QEMU has: its bus and its address."""
    asks = []
    for dev_id, kind in present.items():
        path = f"{query.PERIPHERAL}{dev_id}"
        asks.append((dev_id, "parent_bus", path))
        family = hvi.driver_kind(kind)
        if family == "scsi":
            asks.append((dev_id, "scsi-id", path))
        elif family in ("pci", "controller", "pci-bridge", "pcie-root-port") or kind in DEVICE_DRIVERS:
            asks.append((dev_id, "addr", path))
    return asks


def compare(rt: Runtime, pid: int, present: dict[str, str], placed: dict[str, dict[str, Any]],
            root_slots: dict[int, dict[str, Any]], blocks: dict[str, dict[str, Any]], fdsets: dict[int, list[int]]) -> list[str]:
    """Differences between QEMU's answers and the runtime, both ways (pure but for the file identity check).

    ``placed`` is device id -> {"bus": name, "addr": devfn, "scsi-id": n} as QEMU reports it.
    """
    problems: list[str] = []
    recorded: set[str] = set()
    known_slots: set[int] = set()
    root = hvp.root_bus(rt["hvparams"])
    for kind in ("controllers", "disks", "nics"):
        for dev in records(rt, kind):
            info = dev["hvinfo"]
            dev_id = info["id"]
            recorded.add(dev_id)
            if dev_id not in present:
                problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has no such device")
                continue
            got = placed.get(dev_id, {})
            if got.get("bus") == root and isinstance(got.get("addr"), int):
                known_slots.add(got["addr"] >> 3)
            if present[dev_id] != info["driver"]:
                problems.append(f"{dev_id}: runtime says driver {info['driver']}, QEMU has {present[dev_id]}")
            if got.get("bus") != info["bus"]:
                problems.append(f"{dev_id}: runtime has it on bus {info['bus']}, QEMU has it on {got.get('bus')}")
            elif hvi.is_pci(info) and isinstance(got.get("addr"), int):
                slot, function = hvi.pci_addr(info)  # type: ignore[misc]
                if got["addr"] != slot << 3 | function:
                    problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has it at slot "
                                    f"{got['addr'] >> 3:#04x}.{got['addr'] & 7}")
            elif hvi.is_scsi(info) and got.get("scsi-id") != info["scsi-id"]:
                problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has it at scsi-id {got.get('scsi-id')}")
            if kind == "disks" and dev.get("path"):
                block = blocks.get(dev_id)
                if block is None:
                    problems.append(f"{dev_id}: QEMU has no disk attached to it")
                    continue
                backing = _backing(block, pid, fdsets)
                same = _same_file(backing, dev["path"]) if backing else None
                if same is False:
                    real = os.path.realpath(backing) if backing else "?"
                    problems.append(f"{dev_id}: QEMU's disk is {real}, the runtime says {dev['path']}")
    reported: set[str] = set()
    for dev_id, kind in sorted(present.items()):
        if dev_id not in recorded and (kind in DEVICE_DRIVERS or hvi.driver_kind(kind) is not None):
            got = placed.get(dev_id, {})
            at = f" at {got['bus']} slot {got['addr'] >> 3:#04x}" if isinstance(got.get("addr"), int) else \
                f" at {got.get('bus')} scsi-id {got['scsi-id']}" if "scsi-id" in got else ""
            problems.append(f"QEMU has {kind} {dev_id}{at}, missing from the runtime")
            reported.add(dev_id)
    return problems + _window_drift(rt, root_slots, known_slots, present, reported | recorded)


def _window_drift(rt: Runtime, root_slots: dict[int, dict[str, Any]], known_slots: set[int], present: dict[str, str],
                  skip: set[str]) -> list[str]:
    """Whatever sits in the hotplug window unrecorded, named or not, of any kind: a named device of a kind
    this collection does not know takes the slot too (a hotplug there fails with a drift hint)."""
    root = hvp.root_bus(rt["hvparams"])
    window = construct.bus_state(rt).window()
    problems = []
    for slot, dev in sorted(root_slots.items()):
        qdev = dev.get("qdev_id") or ""
        if slot in window and slot not in known_slots and qdev not in skip:
            what = f"{present[qdev]} {qdev}" if qdev in present else qdev or "a device"
            problems.append(f"QEMU has {what} at {root} slot {slot:#04x}, missing from the runtime")
    return problems


async def drift(sock: str, rt: Runtime, pid: int) -> list[str]:
    """Ask QEMU (four queries, then every device's bus and address, pipelined) and compare."""
    async with qmp.connect(sock) as mon:
        answers = await mon.batch([("qom-list", {"path": query.PERIPHERAL.rstrip("/")}), ("query-pci", None),
                                   ("query-block", None), ("query-fdsets", None)])
        for answer in answers:
            if isinstance(answer, KvmError):
                raise answer.with_step("drift")
        present = query.peripherals(answers[0])
        asks = placement_questions(present)
        got = await mon.batch([("qom-get", {"path": path, "property": prop}) for _i, prop, path in asks]) if asks else []
    placed: dict[str, dict[str, Any]] = {}
    for (dev_id, prop, _path), value in zip(asks, got, strict=True):
        if not isinstance(value, KvmError):
            placed.setdefault(dev_id, {})["bus" if prop == "parent_bus" else prop] = query.bus_name(value) if prop == "parent_bus" else value
    return compare(rt, pid, present, placed, query.pci_devices(answers[1]), query.blocks_by_device(answers[2]),
                   query.fdset_fds(answers[3]))


async def _disk_sizes(sock: str, rt: Runtime) -> dict[str, int]:
    async with qmp.connect(sock) as mon:
        blocks = query.blocks_by_device(await mon.cmd("query-block", step="disk sizes"))
    sizes = {}
    for disk in rt["disks"]:
        image = ((blocks.get(disk["hvinfo"]["id"]) or {}).get("inserted") or {}).get("image") or {}
        if isinstance(image.get("virtual-size"), int):
            sizes[disk["uuid"]] = image["virtual-size"]
    return sizes


def describe(path: str, rt: Runtime, version: int, rd: RunDir | None, where: Paths | None) -> dict[str, Any]:
    """One instance as the module returns it."""
    if rd is not None and where is not None:
        where = lifecycle.locate(rd, where)  # an adopted QEMU's socket and pid file
    pid = process.running_pid(rd, where) if rd is not None and where is not None else None
    status = "alive" if pid else "down"
    if rt.get("mark") == INCOMING:
        status = "incoming" if pid else "incoming-failed"
    elif rt.get("mark") == "stopped" and not pid:
        status = "stopped"
    report: dict[str, Any] = {
        "name": rt.get("name") or (where.name if where else None),
        "runtime_file": path,
        "format_version": version,
        "current_version": FORMAT_VERSION,
        "runtime": rt,
        "bus": allocator.describe(construct.bus_state(rt)),
        "alive": pid is not None,
        "pid": pid,
        "status": status,
        "qmp_socket": where.qmp if where else None,
        "interrupted_hotplugs": [rec["hvinfo"]["id"] for _k, rec in journal.read(rd, where)] if rd and where else [],
        "drift": [],
        "notes": ganeti_notes(dict(rt)),  # what reading a Ganeti runtime changed or assumed
        "disk_sizes": {},
    }
    if pid is not None and rd is not None and where is not None:
        report["drift"] = qmp.run(drift(lifecycle.query_socket(rd, where), rt, pid))
        # Each disk's virtual size as QEMU sees it: what a copy_storage target creates.
        report["disk_sizes"] = qmp.run(_disk_sizes(lifecycle.query_socket(rd, where), rt))
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


def apply(call: Call) -> dict[str, Any]:
    params = call.params
    changed, diffs, reports = False, [], []
    if params["path"]:
        targets: list[tuple[str, Paths | None]] = [(params["path"], None)]
        owned = _instance_of(params["path"])
        rd = RunDir.open(owned[0], create=False) if owned else None
        if owned and rd is not None:
            targets = [(params["path"], paths(owned[0], owned[1]))]
    else:
        rd = open_rundir(params["runtime_dir"], create=False)
        names = [params["name"]] if params["name"] else list_names(rd.listdir())
        targets = [(paths(params["runtime_dir"], n).runtime, paths(params["runtime_dir"], n)) for n in names]
    with rd if rd is not None else contextlib.nullcontext():
        for path, where in targets:
            if where is not None and rd is not None:
                found = runtime_file.load(rd, where.name)
                if found is None:
                    raise KvmError(f"runtime file {path} does not exist")
                rt, version = found
            else:
                rt, version = runtime_file.read_path(path)
            if params["upgrade"] and version < rt["version"]:
                changed = True
                diffs.append({"before": f"{path}: format version {version}\n", "after": f"{path}: format version {rt['version']}\n"})
                _upgrade_in_place(path, call.check)
                if not call.check:
                    version = rt["version"]
            report = describe(path, rt, version, rd if where else None, where)
            if params.get("export"):  # refused with the reason when the devices do not fit the layout
                report["exported"] = EXPORTS[params["export"]](rt, report["alive"])
            reports.append(report)
    result: dict[str, Any] = {"changed": changed, "instances": reports}
    if len(targets) == 1 and (params["name"] or params["path"]):
        result["instance"] = reports[0]
    if call.diff and diffs:
        result["diff"] = diffs
    return result
