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
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, journal, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import NAME_RE, RUNTIME_SUFFIX, Paths, RunDir, list_names, open_rundir, paths
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

DEVICE_DRIVERS = hvp.PCI_DEVICE_DRIVERS | hvp.SCSI_DEVICE_DRIVERS | hvp.IDE_DEVICE_DRIVERS


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


def compare(rt: Runtime, pid: int, present: dict[str, str], pci: dict[int, dict[str, Any]],
            blocks: dict[str, dict[str, Any]], fdsets: dict[int, list[int]], scsi_ids: dict[str, Any]) -> list[str]:
    """Differences between QEMU's answers and the runtime, both ways (pure but for the file identity check)."""
    problems: list[str] = []
    recorded: set[str] = set()
    known_slots: set[int] = set()
    for kind in ("disks", "nics"):
        for dev in rt[kind]:  # type: ignore[literal-required]
            info = dev["hvinfo"]
            dev_id = info["id"]
            recorded.add(dev_id)
            if hvi.is_pci(info) and info["bus"] in ("pci.0", "pcie.0"):
                known_slots.add(hvi.pci_slot(info))  # type: ignore[arg-type]
            if dev_id not in present:
                problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has no such device")
                continue
            if present[dev_id] != info["driver"]:
                problems.append(f"{dev_id}: runtime says driver {info['driver']}, QEMU has {present[dev_id]}")
            if hvi.is_pci(info) and info["bus"] in ("pci.0", "pcie.0"):
                found = pci.get(hvi.pci_slot(info))  # type: ignore[arg-type]
                if found is None or found.get("qdev_id") != dev_id:
                    other = found.get("qdev_id") or "another device" if found else "nothing"
                    problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has {other} there")
            if hvi.is_scsi(info) and dev_id in scsi_ids and scsi_ids[dev_id] != info["scsi-id"]:
                problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has it at scsi-id {scsi_ids[dev_id]}")
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
    slot_of = {dev.get("qdev_id"): slot for slot, dev in pci.items() if dev.get("qdev_id")}
    for dev_id, kind in sorted(present.items()):
        if kind in DEVICE_DRIVERS and dev_id not in recorded:
            at = f" at {hvp.PCI_BUS} slot {slot_of[dev_id]:#04x}" if dev_id in slot_of else ""
            problems.append(f"QEMU has {kind} {dev_id}{at}, missing from the runtime")
    window = allocator.pci_window(rt["hvparams"])
    for slot, dev in sorted(pci.items()):
        qdev = dev.get("qdev_id") or ""
        if slot in window and slot not in known_slots and present.get(qdev) not in DEVICE_DRIVERS:
            problems.append(f"QEMU has {qdev or 'a device'} at {hvp.PCI_BUS} slot {slot:#04x}, missing from the runtime")
    return problems


async def drift(sock: str, rt: Runtime, pid: int) -> list[str]:
    """Ask QEMU (four queries and one qom-get per SCSI disk, pipelined) and compare."""
    async with qmp.connect(sock) as mon:
        answers = await mon.batch([("qom-list", {"path": "/machine/peripheral"}), ("query-pci", None),
                                   ("query-block", None), ("query-fdsets", None)])
        for answer in answers:
            if isinstance(answer, KvmError):
                raise answer.with_step("drift")
        present = query.peripherals(answers[0])
        scsi = [dev_id for dev_id, kind in present.items() if kind in hvp.SCSI_DEVICE_DRIVERS]
        got = await mon.batch([("qom-get", {"path": f"{query.PERIPHERAL}{i}", "property": "scsi-id"}) for i in scsi]) if scsi else []
    scsi_ids = {i: v for i, v in zip(scsi, got, strict=True) if not isinstance(v, KvmError)}
    return compare(rt, pid, present, query.pci_devices(answers[1]), query.blocks_by_device(answers[2]),
                   query.fdset_fds(answers[3]), scsi_ids)


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
        "bus": allocator.describe(construct.bus_state(rt), rt["hvparams"]),
        "alive": pid is not None,
        "pid": pid,
        "status": status,
        "qmp_socket": where.qmp if where else None,
        "interrupted_hotplugs": [rec["hvinfo"]["id"] for _k, rec in journal.read(rd, where)] if rd and where else [],
        "drift": [],
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
            reports.append(describe(path, rt, version, rd if where else None, where))
    result: dict[str, Any] = {"changed": changed, "instances": reports}
    if len(targets) == 1 and (params["name"] or params["path"]):
        result["instance"] = reports[0]
    if call.diff and diffs:
        result["diff"] = diffs
    return result

