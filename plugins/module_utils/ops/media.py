# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scsi-cd's medium, changed or ejected while the guest runs.

The new image is opened here and handed over as an fdset like any disk (a
uri medium, ``iscsi://`` or ``nbd://``, QEMU reaches itself);
then, in one burst, the tray is opened (forced: a guest that uses the drive
locks it), the old medium removed and its node deleted, the new node added
under the same name (the device id) and inserted, and the tray closed. The
old fdset goes last. An empty path ejects: the drive stays, without medium.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, TypedDict

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import host, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.qmp import Command, Monitor
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import DiskRecord, Runtime


MEDIUM = ("path", "uri", "format")


class Medium(TypedDict):
    """What a scsi-cd holds: the part of its record a medium change replaces."""

    path: str | None
    uri: str | None
    format: str


def medium_change(found: Mapping[str, Any], differs: list[str]) -> bool:
    """Whether the differences (``hotplug.mismatch``) are only a scsi-cd's medium, which changes live
    (one rule for kvm_disk_hotplug and convergence)."""
    return bool(differs) and found.get("type") == "scsi-cd" and all(d.split(" ", 1)[0] in MEDIUM for d in differs)


def medium(want: Mapping[str, Any], cd: Mapping[str, Any]) -> Medium:
    """The medium ``want`` asks for, whole: a path or a uri (neither: ejected), with its format."""
    return {"path": want.get("path"), "uri": want.get("uri"), "format": want.get("format", cd["format"])}


def put(disk: DiskRecord, new: Medium) -> None:
    """Record ``new`` as the scsi-cd ``disk``'s medium."""
    disk["path"], disk["uri"], disk["format"] = new["path"], new["uri"], new["format"]


class MediumLost(KvmError):
    """A change failed after the old medium was taken out: the drive is empty now, and must be recorded so."""


def emptied(rt: Runtime, cd: Mapping[str, Any]) -> Runtime:
    """``rt`` with the scsi-cd ``cd`` recorded empty, as QEMU has it after a ``MediumLost``."""
    out = rt.copy()
    out["disks"] = [({**d, "path": None, "uri": None} if d["uuid"] == cd["uuid"] else d) for d in rt["disks"]]
    return out


def _done(answers: Mapping[str, Any], command: str) -> bool:
    return command in answers and not isinstance(answers[command], KvmError)


async def _undo(mon: Monitor, dev_id: str, answers: Mapping[str, Any], new_set: int | None, old_sets: list[int]) -> None:
    """After a failed burst: take out whatever of the new medium QEMU took, so its node (named like the
    device) and fdset do not block the next change; the old fdset goes once its node is gone."""
    if _done(answers, "blockdev-add"):
        if _done(answers, "blockdev-insert-medium"):
            await mon.try_cmd("blockdev-remove-medium", {"id": dev_id})
        await mon.try_cmd("blockdev-del", {"node-name": dev_id})
    stale = old_sets if _done(answers, "blockdev-del") else []
    for fdset in [*stale, *([new_set] if new_set is not None else [])]:
        await mon.try_cmd("remove-fd", {"fdset-id": fdset})


async def change(mon: Monitor, cd: Mapping[str, Any], want: Mapping[str, Any], hvparams: Mapping[str, Any]) -> None:
    """Put ``want``'s medium (or none) into the scsi-cd ``cd`` in one burst; on a failure nothing new stays."""
    dev_id = cd["hvinfo"]["id"]
    old_sets = query.fdsets_by_opaque(await mon.cmd("query-fdsets", step="media")).get(dev_id, [])
    burst: list[Command] = [("blockdev-open-tray", {"id": dev_id, "force": True})]
    if devices.has_medium(cd):
        burst += [("blockdev-remove-medium", {"id": dev_id}), ("blockdev-del", {"node-name": dev_id})]
    record = {**cd, **medium(want, cd), "mode": "ro"}
    new_set = None
    if record["path"]:
        fd, block = host.open_disk(record, hvparams)
        try:
            mon.send_fd(fd)
        finally:
            os.close(fd)
        new_set = int((await mon.cmd("add-fd", {"opaque": dev_id}, step="media"))["fdset-id"])
        burst.append(("blockdev-add", devices.blockdev_args(record, f"/dev/fdset/{new_set}", block)))
    elif record["uri"]:  # QEMU reaches it itself: no descriptor
        burst.append(("blockdev-add", devices.blockdev_args(record, None)))
    if devices.has_medium(record):
        burst.append(("blockdev-insert-medium", {"id": dev_id, "node-name": dev_id}))
    burst.append(("blockdev-close-tray", {"id": dev_id}))
    answers = await mon.batch(burst)
    failed = next((a for a in answers if isinstance(a, KvmError)), None)
    if failed is not None:
        done = dict(zip([c for c, _a in burst], answers, strict=True))
        await _undo(mon, dev_id, done, new_set, old_sets)
        if _done(done, "blockdev-remove-medium"):
            raise MediumLost(f"{failed.msg}; the drive {dev_id} is empty now (its old medium was already out), "
                             "and recorded so", "media", failed.error_class)
        raise failed.with_step("media")
    for fdset in old_sets:
        await mon.try_cmd("remove-fd", {"fdset-id": fdset})
