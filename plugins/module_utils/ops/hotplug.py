# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified, transactional hotplug of disks and NICs.

Add: under the instance lock, allocate from the runtime file, add the
backend (``blockdev-add`` / ``netdev_add``), ``device_add`` with the hvinfo,
verify in QEMU (``query-pci`` for PCI, ``query-block`` on ``qdev`` for SCSI),
then save the runtime. Any failure rolls back what was added and leaves the
runtime file untouched; the error names the step and QEMU's message.

Remove: ``device_del``, wait for ``DEVICE_DELETED`` of that id (event-driven,
with a deadline, the request repeated while the guest stays silent;
``DEVICE_UNPLUG_GUEST_ERROR`` fails), remove the backend, save the runtime.

Re-runs reconcile: if a module run was killed after QEMU got the device but
before the runtime was saved, the next run finds QEMU's leftover under the
planned id (ids derive from uuids, so they are stable), removes it and plugs
again; if the runtime still lists a device QEMU no longer has, removal just
finishes the bookkeeping. An address taken in QEMU by a device the runtime
does not know (drift) makes QEMU refuse the ``device_add``; this is
reported as drift and rolled back, never double-used.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file as runtime
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import tap
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

DELETE_EVENTS = ("DEVICE_DELETED", "DEVICE_UNPLUG_GUEST_ERROR")
REREQUEST_EVERY = 5.0  # seconds without DEVICE_DELETED before device_del is sent again


def find(records: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any] | None:
    return next((rec for rec in records if rec.get(key) == value), None)


def identity(kind: str, spec: dict[str, Any]) -> tuple[str, Any]:
    """(key, value) that identifies a device: its uuid when given, else path / mac."""
    if spec.get("uuid"):
        return "uuid", hvinfo.check_uuid(spec["uuid"])
    if kind == "disks":
        return "path", spec.get("path")
    if not spec.get("mac"):
        raise KvmError("nic needs a 'uuid' or a 'mac' to be identified")
    return "mac", spec["mac"].lower()


def load_running(where: runtime.Paths) -> dict[str, Any]:
    if not os.path.exists(where.runtime):
        raise KvmError(f"instance {where.name} has no runtime file in {where.runtime_dir}")
    rt = runtime.read_file(where.runtime)[0]
    if not process.running_pid(where):
        raise KvmError(f"instance {where.name} is not running; hotplug needs a running QEMU (start it with kvm_instance)")
    return rt


def plan_add(rt: dict[str, Any], kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with the hvinfo the allocator gives it (the runtime is not changed)."""
    hvp = rt["hvparams"]
    state = runtime.bus_state(rt)
    if kind == "disks":
        if hvp["disk_type"] == "ide":
            raise KvmError("disk_type ide cannot be hotplugged (QEMU's IDE bus has no hotplug); use a SCSI or paravirtual disk_type")
        info = allocator.place_disk(state, hvp, record["uuid"])
    else:
        info = allocator.place_nic(state, hvp, record["uuid"])
    return {**record, "hvinfo": info}


def _drift_hint(err: KvmError, info: dict[str, Any]) -> KvmError:
    text = err.msg.lower()
    if any(word in text for word in ("in use", "already", "duplicate", "not available")):
        where = f"slot {info['addr']}" if hvinfo.is_pci(info) else f"scsi-id {info.get('scsi-id')}"
        return KvmError(f"drift: QEMU already has something at {info['bus']} {where} or id {info['id']} "
                        f"that the runtime file does not record ({err.msg}); run kvm_instance_info to see the drift",
                        err.step)
    return err


async def _request_unplug(mon: qmp.Monitor, dev_id: str, step: str) -> bool:
    """Send device_del; False if QEMU has no such device.

    QEMU refuses a repeat while the VM is paused ("already in the process
    of unplug"): the request it holds is still pending, so that is fine.
    """
    try:
        await mon.cmd("device_del", {"id": dev_id}, step=step)
    except KvmError as err:
        if "not found" in err.msg.lower():
            return False
        if "in the process of unplug" not in err.msg.lower():
            raise
    return True


async def _unplug(mon: qmp.Monitor, dev_id: str, timeout: float, step: str) -> bool:
    """device_del and wait for its DEVICE_DELETED; False if QEMU has no such device.

    A guest drops an ACPI unplug request that arrives while it boots (before
    its hotplug driver is up) and never asks again, so while no answer comes
    the request is repeated every REREQUEST_EVERY seconds until ``timeout``.
    A repeat re-raises the ACPI event; QEMU allows it on a running VM.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with mon.events(DELETE_EVENTS) as listener:
        if not await _request_unplug(mon, dev_id, step):
            return False
        while True:
            left = deadline - loop.time()
            try:
                event = await mon.wait_for(listener, lambda ev: ev["data"].get("device") == dev_id,
                                           min(left, REREQUEST_EVERY), f"DEVICE_DELETED for {dev_id}")
                break
            except qmp.QmpClosed as err:
                raise KvmError(f"{err.msg}; the runtime file still lists {dev_id}", step) from None
            except KvmError:  # no answer in this slice
                if left <= REREQUEST_EVERY:
                    raise KvmError(f"no DEVICE_DELETED for {dev_id} within {timeout:g}s (the guest did not release it)") from None
            if not await _request_unplug(mon, dev_id, step):
                return True  # gone between the slice's end and the repeat
    if event["event"] == "DEVICE_UNPLUG_GUEST_ERROR":
        raise KvmError(f"the guest refused to release {dev_id}", step)
    return True


def _check_verify(kind: str, info: dict[str, Any], answer: Any) -> None:
    """The device must sit where its hvinfo says: query-pci slot for PCI, query-block qdev for SCSI."""
    if hvinfo.is_pci(info):
        found = qmp.pci_devices(answer).get(hvinfo.pci_slot(info))  # type: ignore[arg-type]
        if not found or found.get("qdev_id") != info["id"]:
            raise KvmError(f"QEMU shows {found.get('qdev_id') if found else 'nothing'} at {info['bus']} slot {info['addr']}, "
                           f"not {info['id']}", "verify")
    elif kind == "disks" and qmp.block_for_device(answer, info["id"]) is None:
        raise KvmError(f"QEMU has no disk attached to {info['id']}", "verify")


def _backend(kind: str, rec: dict[str, Any], fdname: str | None) -> tuple[tuple[str, Any] | None, tuple[str, Any] | None]:
    """(add command, undo command) of the device's backend, or (None, None) without one."""
    dev_id = rec["hvinfo"]["id"]
    if kind == "disks":
        return ("blockdev-add", devices.blockdev_args(rec)), ("blockdev-del", {"node-name": dev_id})
    args = devices.netdev_args(rec, fdname)
    return (("netdev_add", args), ("netdev_del", {"id": dev_id})) if args else (None, None)


def _is_duplicate(err: Any) -> bool:
    return isinstance(err, KvmError) and ("duplicate" in err.msg.lower() or "already" in err.msg.lower())


async def _plug(sock: str, kind: str, rec: dict[str, Any], timeout: float) -> None:
    """Backend, device_add and the verify query, pipelined in one burst on one connection.

    QEMU runs the commands in order, so a failed backend makes the device_add
    fail too; the answers say exactly what to undo.
    """
    info = rec["hvinfo"]
    dev_id = info["id"]
    extra = devices.disk_device_extra(rec) if kind == "disks" else devices.nic_device_extra(rec)
    async with qmp.connect(sock) as mon:
        fdname = None
        if kind == "nics" and (rec.get("network") or {}).get("type") == "tap":
            fd, rec["tap_created"] = tap.open_tap(rec["network"]["ifname"], rec["network"].get("bridge"))
            try:
                mon.send_fd(fd)
            finally:
                os.close(fd)  # QEMU keeps its own copy (getfd); a tap we created lives as long as that copy
            fdname = dev_id
        backend, undo = _backend(kind, rec, fdname)
        verify = ("query-pci", None) if hvinfo.is_pci(info) else ("query-block", None)
        burst = [("getfd", {"fdname": fdname})] if fdname else []
        burst += ([backend] if backend else []) + [("device_add", hvinfo.device_add_args(info, **extra)), verify]
        answers = dict(zip([item[0] for item in burst], await mon.batch(burst), strict=True))
        if backend and _is_duplicate(answers[backend[0]]):
            # Left over from a run killed before it saved the runtime: remove it, plug again.
            await _unplug(mon, dev_id, timeout, "reconcile")
            await mon.try_cmd(*undo)  # type: ignore[misc]
            burst = [cmd for cmd in burst if cmd[0] != "getfd"]
            answers.update(zip([item[0] for item in burst], await mon.batch(burst), strict=True))
        try:
            for cmd in ("getfd", backend[0] if backend else None):
                if isinstance(answers.get(cmd), KvmError):
                    raise answers[cmd]
            if isinstance(answers["device_add"], KvmError):
                raise _drift_hint(answers["device_add"], info)
            if isinstance(answers[verify[0]], KvmError):
                raise answers[verify[0]]
            try:
                _check_verify(kind, info, answers[verify[0]])
            except KvmError:
                await _unplug(mon, dev_id, timeout, "rollback")
                raise
        except BaseException:
            if backend and not isinstance(answers.get(backend[0]), KvmError):
                await mon.try_cmd(*undo)  # type: ignore[misc]
            if fdname:
                await mon.try_cmd("closefd", {"fdname": fdname})
            raise


async def _unplug_all(sock: str, kind: str, rec: dict[str, Any], timeout: float) -> None:
    info = rec["hvinfo"]
    async with qmp.connect(sock) as mon:
        await _unplug(mon, info["id"], timeout, "device_del")
        if kind == "disks":
            await mon.try_cmd("blockdev-del", {"node-name": info["id"]})
        elif rec.get("network"):
            await mon.try_cmd("netdev_del", {"id": info["id"]})


def present(where: runtime.Paths, kind: str, spec: dict[str, Any], check: bool, timeout: float) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """Make sure the device is plugged; returns (changed, record, diff)."""
    rt = load_running(where)
    key, value = identity(kind, spec)
    found = find(rt[kind], key, value)
    if found:
        return False, found, {}
    if kind == "disks":
        rec = devices.disk_record(spec, rt["uuid"] or devices.derived_uuid("instance", where.name))
        devices.check_disk_path(rec, rt["hvparams"])
        if find(rt["disks"], "path", rec["path"]) and key == "uuid":
            raise KvmError(f"disk {rec['path']} is already plugged under another uuid")
    else:
        rec = devices.nic_record(spec, rt["uuid"] or devices.derived_uuid("instance", where.name))
        if find(rt["nics"], "mac", rec["mac"]):
            raise KvmError(f"MAC {rec['mac']} is already used by another NIC of {where.name}")
    rec = plan_add(rt, kind, rec)
    after = {**rt, kind: [*rt[kind], rec]}  # rt was loaded for this call alone: no copy needed
    diff = {"before": _layout(rt), "after": _layout(after)}
    if check:
        return True, rec, diff
    qmp.run(_plug(where.qmp, kind, rec, timeout))
    runtime.write_file(where.runtime, after)
    return True, rec, diff


def absent(where: runtime.Paths, kind: str, spec: dict[str, Any], check: bool, timeout: float) -> tuple[bool, dict[str, Any] | None, dict[str, Any]]:
    """Make sure the device is unplugged; returns (changed, removed record, diff)."""
    rt = load_running(where)
    key, value = identity(kind, spec)
    found = find(rt[kind], key, value)
    if not found:
        return False, None, {}
    after = {**rt, kind: [rec for rec in rt[kind] if rec is not found]}
    diff = {"before": _layout(rt), "after": _layout(after)}
    if check:
        return True, found, diff
    qmp.run(_unplug_all(where.qmp, kind, found, timeout))
    runtime.write_file(where.runtime, after)
    return True, found, diff


def _layout(rt: dict[str, Any]) -> str:
    lines = []
    for kind in ("disks", "nics"):
        for rec in rt[kind]:
            info = rec["hvinfo"]
            where = f"slot {info['addr']}" if hvinfo.is_pci(info) else f"scsi-id {info.get('scsi-id')}" if hvinfo.is_scsi(info) else f"unit {info.get('unit')}"
            lines.append(f"{info['id']} {info['driver']} {info['bus']} {where}")
    return "\n".join(lines) + "\n"


def module_action(module: Any, kind: str, option: str) -> dict[str, Any]:
    """The whole kvm_disk_hotplug / kvm_nic_hotplug call, under the instance lock."""
    params = module.params
    where = runtime.paths(params["runtime_dir"], params["instance"])
    spec = {k: v for k, v in (params[option] or {}).items() if v is not None}
    handler = present if params["state"] == "present" else absent
    if module.check_mode:
        changed, rec, diff = handler(where, kind, spec, True, params["unplug_timeout"])
    else:
        with runtime.locked(where):
            changed, rec, diff = handler(where, kind, spec, False, params["unplug_timeout"])
    result: dict[str, Any] = {"changed": changed, "device": devices.public(rec) if rec else None}
    if module._diff and changed:
        result["diff"] = diff
    return result
