# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one hotplug engine: plug, verify, roll back, unplug, reconcile.

Both hotplug modules and ``kvm_instance``'s live convergence use it, for
one device or many at once.

Plug (all or nothing): the descriptors QEMU needs are handed over one by one
(a disk as an fdset named after the device, a tap as a named fd), then the
backends, every ``device_add`` and one verify query go to QEMU in one
pipelined burst. Any failure removes everything the burst added (devices
unplugged concurrently, backends and descriptors released) and raises.

Unplug: every ``device_del`` is sent at once and the ``DEVICE_DELETED``
events are awaited together; while a device stays silent its request is
repeated (a guest drops an ACPI request that arrives while it boots). Then
the backends and fdsets go. The result says which devices left and which
did not.

Reconcile: a run killed between touching QEMU and saving the runtime file
leaves its journal (``<name>.pending.json``). The next writer looks at each
journalled device in QEMU: one that is fully there is committed to the
runtime (it was asked for and it is exactly what was planned), anything
partial (a block node, a netdev, a descriptor holding a tap) is removed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import DEVICE_NOT_FOUND, KvmError, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import kinds
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DISKS, NICS, DeviceKind, RecordKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host, query, tap
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.qmp import Command, Monitor

DELETE_EVENTS = ("DEVICE_DELETED", "DEVICE_UNPLUG_GUEST_ERROR")
REREQUEST_EVERY = 5.0  # seconds without DEVICE_DELETED before device_del is sent again


@dataclass
class Item:
    """One device of a burst: ``kind`` is ``disks`` or ``nics``."""

    kind: RecordKind
    record: dict[str, Any]
    fdset: int | None = None  # the disk's fdset in QEMU, once handed over
    fdname: str | None = None  # the tap's named descriptor in QEMU, once handed over
    block_device: bool = False  # the disk's path is a block device (QEMU's host_device driver)

    @property
    def id(self) -> str:
        return str(self.record["hvinfo"]["id"])

    @property
    def device_kind(self) -> DeviceKind | None:
        """The disk or NIC kind; None for a controller (no backend, nothing handed over)."""
        return kinds.of(self.kind)

    @property
    def is_tap(self) -> bool:
        return self.device_kind is NICS and (self.record.get("network") or {}).get("type") == "tap"

    @property
    def has_file(self) -> bool:
        """A disk on a host file: handed over as an fdset."""
        return self.device_kind is DISKS and bool(self.record.get("path"))

    def backend(self) -> tuple[str, dict[str, object]] | None:
        kind = self.device_kind
        return kind.backend(self.record, self.fdset, self.fdname, self.block_device) if kind else None

    def device(self) -> dict[str, object]:
        kind = self.device_kind
        return hvi.device_args(self.record["hvinfo"], **(kind.device_extra(self.record) if kind else {}))


class PlugFailed(KvmError):
    """A burst failed; ``clean`` says whether everything it added left QEMU again."""

    clean = True


async def _hand_over(mon: Monitor, item: Item, hvparams: Mapping[str, Any]) -> None:
    """Open the item's disk or tap here and pass it to QEMU (one round trip: fds cannot be pipelined)."""
    if item.has_file:
        fd, item.block_device = host.open_disk(item.record, hvparams)
        try:
            mon.send_fd(fd)
        finally:
            os.close(fd)
        answer = await mon.cmd("add-fd", {"opaque": item.id}, step="add-fd")
        item.fdset = int(answer["fdset-id"])
    elif item.is_tap:
        net = item.record["network"]
        fd, _created = tap.open_tap(net["ifname"], net.get("bridge"))
        try:
            mon.send_fd(fd)
        finally:
            os.close(fd)  # QEMU keeps its own copy; a tap we created lives as long as that copy
        await mon.cmd("getfd", {"fdname": item.id}, step="getfd")
        item.fdname = item.id


async def _release(mon: Monitor, items: list[Item], fdsets: dict[str, list[int]] | None = None) -> None:
    """Best effort: remove the items' backends and descriptors (their devices are gone)."""
    burst: list[Command] = []
    for item in items:
        kind = item.device_kind
        if kind is not None:
            sets = {item.fdset} if item.fdset is not None else set()
            sets.update((fdsets or {}).get(item.id, []))
            burst += kind.release(item.id, sorted(sets))
    if burst:
        await mon.batch(burst)


def _placement_queries(item: Item) -> list[Command]:
    """qom-get questions whose answers say where QEMU put the item's device."""
    path = f"{query.PERIPHERAL}{item.id}"
    info = item.record["hvinfo"]
    props = ["parent_bus", "addr"] if hvi.is_pci(info) else ["parent_bus", "scsi-id"] if hvi.is_scsi(info) else ["parent_bus"]
    return [("qom-get", {"path": path, "property": prop}) for prop in props]


def _backing_queries(item: Item) -> list[Command]:
    """The question whose answer names the block node behind the item's device (disks with a medium).

    One ``qom-get`` per new disk, not a ``query-block`` of every drive: the
    verification costs the same for the hundredth device as for the first.
    The node was made in the same burst from the descriptor handed over (a
    ``blockdev-add`` of a name that exists fails), so naming it proves the file.
    """
    if item.device_kind is DISKS and devices.has_medium(item.record):
        return [("qom-get", {"path": f"{query.PERIPHERAL}{item.id}", "property": "drive"})]
    return []


def _verify(item: Item, answers: list[Any]) -> str | None:
    """Why QEMU does not have ``item`` as planned, or None (``answers``: placement, then backing)."""
    info = item.record["hvinfo"]
    placed = answers[:len(_placement_queries(item))]
    for answer in placed:
        if isinstance(answer, KvmError):
            return f"QEMU has no device {item.id} ({answer.msg})"
    bus = query.bus_name(placed[0])
    if bus != info["bus"]:
        return f"QEMU put {item.id} on bus {bus}, not {info['bus']}"
    pci = hvi.pci_addr(info)
    if pci is not None:
        if placed[1] != pci.devfn:
            return f"QEMU put {item.id} at devfn {placed[1]:#x}, not {hvi.where(info)}"
    elif hvi.is_scsi(info) and placed[1] != info["scsi-id"]:
        return f"QEMU put {item.id} at scsi-id {placed[1]}, not {info['scsi-id']}"
    backing = answers[len(placed):]
    if backing:
        node = backing[0]
        if isinstance(node, KvmError):
            return f"QEMU has no disk attached to {item.id} ({node.msg})"
        if not node:
            return f"QEMU has no disk attached to {item.id}"
        if node != item.id:
            return f"disk {item.id} is backed by {node}, not by what was handed over"
    return None


async def _occupant(mon: Monitor, item: Item) -> str | None:
    """When ``device_add`` failed: the device QEMU already has at that address or id (drift), if any."""
    info = item.record["hvinfo"]
    present = query.peripherals(await mon.cmd("qom-list", {"path": query.PERIPHERAL.rstrip("/")}))
    if item.id in present:
        return f"a device with id {item.id}"
    others = [i for i in present if i != item.id]
    if not others:
        return None  # nothing else there: no drift, and no round trip
    questions: list[Command] = []
    for dev_id in others:
        questions += _placement_queries(Item("disks", {"hvinfo": {**info, "id": dev_id}}))
    answers = await mon.batch(questions)
    width = len(_placement_queries(item))
    for pos, dev_id in enumerate(others):
        got = answers[pos * width:(pos + 1) * width]
        if any(isinstance(a, KvmError) for a in got) or query.bus_name(got[0]) != info["bus"]:
            continue
        if hvi.is_pci(info) and got[1] >> 3 == hvi.pci_slot(info):
            return f"{dev_id} at {hvi.where(info)}"
        if hvi.is_scsi(info) and got[1] == info["scsi-id"]:
            return f"{dev_id} at {hvi.where(info)}"
    return None


async def plug(mon: Monitor, items: list[Item], hvparams: Mapping[str, Any], unplug_timeout: float) -> None:
    """Add every item, verified; on any failure nothing of the burst stays (PlugFailed)."""
    handed: list[Item] = []
    added: list[Item] = []
    try:
        for item in items:
            handed.append(item)
            await _hand_over(mon, item, hvparams)
        faults.point("fds-passed")
        burst: list[Command] = []
        for item in items:
            backend = item.backend()
            burst += ([backend] if backend else []) + [("device_add", item.device())]
        queries: list[Command] = []
        for item in items:
            queries += _placement_queries(item) + _backing_queries(item)
        answers = await mon.batch(burst + queries)
        verify = answers[len(burst):]
        pos = 0
        failure: KvmError | None = None
        for item in items:
            kind = item.device_kind
            if kind is not None and item.backend():
                if isinstance(answers[pos], KvmError) and failure is None:
                    failure = answers[pos].with_step(kind.backend_step)
                pos += 1
            if isinstance(answers[pos], KvmError):
                if failure is None:
                    failure = answers[pos].with_step("device_add")
                    occupant = await _occupant(mon, item)
                    if occupant:
                        failure = KvmError(f"drift: QEMU already has {occupant} that the runtime file does not record "
                                           f"({failure.msg}); run kvm_instance_info to see the drift", "device_add")
            else:
                added.append(item)
            pos += 1
        if failure is None:
            pos = 0
            for item in items:
                width = len(_placement_queries(item)) + len(_backing_queries(item))
                problem = _verify(item, verify[pos:pos + width])
                pos += width
                if problem and failure is None:
                    failure = KvmError(problem, "verify")
        if failure is not None:
            raise failure
        faults.point("plugged")
    except BaseException as err:
        clean = await _rollback(mon, added, handed, unplug_timeout)
        if isinstance(err, KvmError):
            failed = PlugFailed(err.msg if clean else f"{err.msg}; rolling back did not finish, the next run completes it",
                                err.step, err.error_class)
            failed.clean = clean
            raise failed from None
        raise


async def replug(mon: Monitor, item: Item, hvparams: Mapping[str, Any], unplug_timeout: float) -> None:
    """Plug a recorded device QEMU lost, at its recorded address, after clearing what it left behind."""
    fdsets = query.fdsets_by_opaque(await mon.cmd("query-fdsets"))
    await _release(mon, [item], fdsets)
    await plug(mon, [item], hvparams, unplug_timeout)


async def _rollback(mon: Monitor, added: list[Item], handed: list[Item], unplug_timeout: float) -> bool:
    """Undo a burst: unplug what was added, release the rest. True if QEMU is back as it was."""
    try:
        _gone, stuck = await unplug(mon, added, unplug_timeout, "rollback") if added else ([], [])
        stuck_ids = {item.id for item, _err in stuck}
        await _release(mon, [item for item in handed if item.id not in stuck_ids])
        return not stuck
    except KvmError:
        return False


async def unplug(mon: Monitor, items: list[Item], timeout: float, step: str = "device_del") -> tuple[list[Item], list[tuple[Item, KvmError]]]:
    """Unplug every item at once; returns (gone, [(still there, why)]).

    A device QEMU no longer has (``DeviceNotFound``) counts as gone. Backends
    and fdsets of the gone devices are released.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = {item.id: item for item in items}
    refused: dict[str, KvmError] = {}
    failed: list[tuple[Item, KvmError]] = []
    gone: list[Item] = []
    with mon.events(DELETE_EVENTS) as listener:
        answers = await mon.batch([("device_del", {"id": i}) for i in waiting] + [("query-fdsets", None)])
        fdsets = query.fdsets_by_opaque(answers[-1]) if not isinstance(answers[-1], KvmError) else {}
        for dev_id, answer in zip(list(waiting), answers[:-1], strict=True):
            if isinstance(answer, QmpClosed):
                raise answer.with_step(step)
            if isinstance(answer, KvmError):
                if answer.error_class == DEVICE_NOT_FOUND:
                    gone.append(waiting.pop(dev_id))
                else:
                    refused[dev_id] = answer  # kept: the wait below decides (a repeat of a pending unplug is refused too)
        faults.point("unplug-requested")
        last_request = loop.time()
        while waiting:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                event = await mon.wait_for(listener, lambda ev: ev["data"].get("device") in waiting,
                                           min(left, max(0.05, last_request + REREQUEST_EVERY - loop.time())),
                                           "DEVICE_DELETED")
            except QmpClosed:
                names = ", ".join(sorted(waiting))
                raise QmpClosed(f"QEMU closed its QMP connection (it exited) while waiting for DEVICE_DELETED for {names}; "
                                f"the runtime file still lists {names}", step) from None
            except KvmError:
                if loop.time() < deadline:  # silent so far: ask again (QEMU re-raises the ACPI event)
                    await mon.batch([("device_del", {"id": i}) for i in waiting])
                    last_request = loop.time()
                continue
            dev_id = event["data"]["device"]
            item = waiting.pop(dev_id)
            if event["event"] == "DEVICE_UNPLUG_GUEST_ERROR":
                failed.append((item, KvmError(f"the guest refused to release {dev_id}", step)))
            else:
                gone.append(item)
    for dev_id, item in waiting.items():
        why = f"; QEMU said: {refused[dev_id].msg}" if dev_id in refused else ""
        failed.append((item, KvmError(f"no DEVICE_DELETED for {dev_id} within {timeout:g}s (the guest did not release it){why}", step)))
    await _release(mon, gone, fdsets)
    return gone, failed


async def reconcile(mon: Monitor, journal: list[Item], unplug_timeout: float) -> tuple[list[Item], list[Item]]:
    """Settle a journal left by a killed run: (committed: fully in QEMU, removed: partial leftovers)."""
    answers = await mon.batch([("qom-list", {"path": "/machine/peripheral"}), ("query-fdsets", None), ("query-block", None)])
    for answer in answers:
        if isinstance(answer, KvmError):
            raise answer.with_step("reconcile")
    present = query.peripherals(answers[0])
    fdsets = query.fdsets_by_opaque(answers[1])
    blocks = query.blocks_by_device(answers[2])
    committed: list[Item] = []
    partial: list[Item] = []
    for item in journal:
        complete = present.get(item.id) == item.record["hvinfo"]["driver"]
        if complete and item.has_file:
            backing = (blocks.get(item.id) or {}).get("inserted", {}).get("file", "")
            complete = any(backing == f"/dev/fdset/{s}" for s in fdsets.get(item.id, []))
        (committed if complete else partial).append(item)
    wrong = [item for item in partial if item.id in present]
    if wrong:
        _gone, stuck = await unplug(mon, wrong, unplug_timeout, "reconcile")
        if stuck:
            raise stuck[0][1]
    await _release(mon, [item for item in partial if item not in wrong], fdsets)
    return committed, partial
