# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Instance lifecycle behind ``kvm_instance``: plan, start, stop, remove, incoming.

The runtime file is written before QEMU starts and removed again if the
start fails, so a runtime file always describes what runs (or what ran, for
a stopped instance). A stopped instance keeps its runtime file with
``"stopped": true``; starting it again reuses every recorded hvinfo, so all
devices keep their addresses. A runtime file without that mark and without a
live QEMU means QEMU died behind our back: ``running`` restarts it from the
file and reports ``recovered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as cmdline
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file as runtime
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

SPEC_KEYS = ("memory", "vcpus", "hvparams")


def requested_spec(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the module parameters into an instance spec (no I/O but stat of disks)."""
    name = runtime.check_name(params["name"])
    uuid = hvinfo.check_uuid(params["uuid"], "instance uuid") if params.get("uuid") else devices.derived_uuid("instance", name)
    for key, low in (("memory", 16), ("vcpus", 1)):
        if params[key] < low:
            raise KvmError(f"{key} must be at least {low}")
    hvp = hvparams.normalize(params.get("hvparams") or {})
    disks = [devices.disk_record(d, uuid) for d in params.get("disks") or []]
    nics = [devices.nic_record(n, uuid, i) for i, n in enumerate(params.get("nics") or [])]
    for kind, items, key in (("disk", disks, "uuid"), ("disk", disks, "path"), ("nic", nics, "uuid"), ("nic", nics, "mac")):
        values = [item[key] for item in items]
        dup = {v for v in values if values.count(v) > 1}
        if dup:
            raise KvmError(f"two {kind}s have the same {key}: {', '.join(sorted(dup))}")
    return {"name": name, "uuid": uuid, "memory": params["memory"], "vcpus": params["vcpus"],
            "hvparams": hvp, "disks": disks, "nics": nics}


def _dev_key(dev: dict[str, Any], kind: str) -> tuple:
    if kind == "disks":
        return (dev["uuid"], dev["path"], dev["format"], dev["mode"])
    return (dev["uuid"], dev["mac"], repr(dev.get("network")))


def summary(spec: dict[str, Any]) -> dict[str, Any]:
    """The comparable part of a spec or runtime (for diff and idempotence)."""
    return {
        "memory": spec.get("memory"),
        "vcpus": spec.get("vcpus"),
        "hvparams": spec["hvparams"],
        "disks": [{k: d.get(k) for k in ("uuid", "path", "format", "mode")} for d in spec["disks"]],
        "nics": [{k: n.get(k) for k in ("uuid", "mac", "network")} for n in spec["nics"]],
    }


def differences(rt: dict[str, Any], spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(pending spec changes, device list changes) between a runtime and a request."""
    pending = [f"{key}: {rt.get(key)!r} -> {spec[key]!r}" for key in ("memory", "vcpus") if rt.get(key) != spec[key]]
    pending += [f"hvparams.{key}: {rt['hvparams'].get(key)!r} -> {value!r}"
                for key, value in spec["hvparams"].items() if rt["hvparams"].get(key) != value]
    device_changes = []
    for kind, module in (("disks", "kvm_disk_hotplug"), ("nics", "kvm_nic_hotplug")):
        have = {_dev_key(d, kind) for d in rt[kind]}
        want = {_dev_key(d, kind) for d in spec[kind]}
        if have != want:
            device_changes.append(f"{kind} differ from the running instance ({len(want - have)} to add, "
                                  f"{len(have - want)} to remove): use kvmhv.qemu.{module} on a running instance")
    return pending, device_changes


def merge_devices(old: list[dict[str, Any]], new: list[dict[str, Any]], hvp: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """New device records that keep the recorded hvinfo of devices already known.

    A recorded hvinfo is kept when the same uuid is asked for again and the
    address still fits the (possibly changed) hvparams; everything else is
    placed afresh by the allocator afterwards.
    """
    recorded = {d["uuid"]: d for d in old}
    driver = hvparams.disk_driver(hvp) if kind == "disks" else hvparams.nic_driver(hvp)
    window = allocator.pci_window(hvp)
    merged = []
    for dev in new:
        prev = recorded.get(dev["uuid"])
        info = prev.get("hvinfo") if prev else None
        if info and info["driver"] == driver and (not hvinfo.is_pci(info) or hvinfo.pci_slot(info) in window):
            kept = {key: prev[key] for key in ("tap_created",) if key in prev}
            merged.append({**dev, **kept, "hvinfo": info})
        else:
            merged.append(dev)
    return merged


def plan_runtime(spec: dict[str, Any], binary: str, old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The runtime a start of ``spec`` would write (reusing ``old``'s addresses)."""
    disks = [dict(d) for d in spec["disks"]]
    nics = [dict(n) for n in spec["nics"]]
    if old:
        disks = merge_devices(old["disks"], disks, spec["hvparams"], "disks")
        nics = merge_devices(old["nics"], nics, spec["hvparams"], "nics")
    return runtime.new_runtime(spec["name"], spec["uuid"], spec["memory"], spec["vcpus"], spec["hvparams"], binary, disks, nics)


async def _query_status(sock: str) -> str:
    async with qmp.connect(sock, timeout=5) as mon:
        return (await mon.cmd("query-status"))["status"]


def status(where: runtime.Paths) -> tuple[str, int | None]:
    """(status, pid): running/paused/incoming/... from QEMU, stopped, or absent."""
    pid = process.running_pid(where)
    if pid:
        try:
            state = qmp.run(_query_status(where.qmp))
        except KvmError:
            state = "unknown"
        return ("incoming" if state == "inmigrate" else state), pid
    return ("stopped" if os.path.exists(where.runtime) else "absent"), None


def load(where: runtime.Paths) -> dict[str, Any] | None:
    if not os.path.exists(where.runtime):
        return None
    return runtime.read_file(where.runtime)[0]


def start(rt: dict[str, Any], where: runtime.Paths, incoming: str | None = None) -> int:
    """Write the runtime file, then start QEMU; undo the write if QEMU fails."""
    existed = os.path.exists(where.runtime)
    before = open(where.runtime, encoding="utf-8").read() if existed else None
    rt.pop("stopped", None)
    runtime.write_file(where.runtime, rt)
    try:
        pid = process.start(rt, where, "defer" if incoming else None)[0]
        if incoming:
            qmp.run(_listen(where.qmp, incoming))
    except BaseException:
        process.cleanup(where)
        if before is None:
            for name in (where.runtime, where.serial):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        else:
            runtime.write_file(where.runtime, before)
        raise
    return pid


# The return path lets the target tell the source that loading failed, so
# the source never counts a migration as done that the target could not use.
MIGRATION_CAPS = [{"capability": "events", "state": True}, {"capability": "return-path", "state": True}]


async def _listen(sock: str, uri: str) -> None:
    """Make a ``-incoming defer`` QEMU listen on ``uri`` with our migration capabilities."""
    async with qmp.connect(sock) as mon:
        await mon.cmd("migrate-set-capabilities", {"capabilities": MIGRATION_CAPS}, step="incoming")
        await mon.cmd("migrate-incoming", {"uri": uri}, step="incoming")


async def _powerdown(sock: str, pid: int, timeout: float) -> None:
    """Ask the guest to power off; wait for QEMU to exit, else quit it."""
    async with qmp.connect(sock) as mon:
        await mon.try_cmd("system_powerdown")
        loop = asyncio.get_running_loop()
        exited = await loop.run_in_executor(None, process.wait_exit, pid, timeout)
        if not exited:
            await mon.try_cmd("quit")


def stop(where: runtime.Paths, timeout: float, graceful: bool = True) -> None:
    """Stop QEMU: ACPI powerdown with a deadline, then ``quit``, then SIGKILL."""
    pid = process.running_pid(where)
    if not pid:
        return
    if graceful:
        with contextlib.suppress(KvmError):
            qmp.run(_powerdown(where.qmp, pid, timeout))
    else:
        with contextlib.suppress(KvmError):
            qmp.run(_quit(where.qmp))
    if not process.wait_exit(pid, 10):
        process.stop_hard(where)
    process.remove_files(where)


async def _quit(sock: str) -> None:
    async with qmp.connect(sock, timeout=5) as mon:
        await mon.try_cmd("quit")


def public(rt: dict[str, Any], where: runtime.Paths, state: str, pid: int | None) -> dict[str, Any]:
    """The ``instance`` a module returns."""
    return {
        "name": where.name,
        "uuid": rt.get("uuid"),
        "status": state,
        "pid": pid,
        "qmp_socket": where.qmp,
        "runtime_file": where.runtime,
        "serial_log": where.serial,
        "disks": [devices.public(d) for d in rt["disks"]],
        "nics": [devices.public(n) for n in rt["nics"]],
        "cmdline": cmdline.launch_argv(rt, where.qmp, where.pidfile, where.serial),
    }
