# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hotplug journal, ``<name>.pending.json``: what a writer is about to add to QEMU.

Written (atomically) before the first QMP command of a burst and removed
after the runtime file records the devices, or after a rollback that left
QEMU as it was. If a writer dies in between, the next writer finds it and
reconciles (``ops.engine.reconcile``). Keeping it out of the runtime file
means a failed save can always be undone: removing a file needs no space.
"""

from __future__ import annotations

import json
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import KINDS as DEVICE_KINDS
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import RecordKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir

KINDS: dict[str, tuple[str, ...]] = {**{kind.name: kind.placements for kind in DEVICE_KINDS}, "controllers": ("controller",)}


Entry = tuple[RecordKind, dict[str, Any]]


def _entries(text: str) -> list[Entry]:
    """The journal's entries, each record's hvinfo validated like the runtime's (raises on any damage)."""
    data = json.loads(text)
    entries: list[Entry] = [(entry["kind"], entry["record"]) for entry in data]
    for kind, record in entries:
        if kind not in KINDS or not isinstance(record, dict):
            raise ValueError(kind)
        record["hvinfo"] = hvi.validate(record.get("hvinfo"), "journal", KINDS[kind])
        if kind == "controllers" and record.get("kind") != "scsi":
            raise ValueError("only SCSI controllers are hot-added")
    return entries


def read(rd: RunDir, where: Paths) -> list[Entry]:
    """The pending entries; any damage (a bad hvinfo too) names the file and the way out."""
    text = rd.read_text(where.names.journal)
    if text is None:
        return []
    try:
        return _entries(text)
    except KvmError as err:
        reason = err.msg
    except (ValueError, TypeError, KeyError) as err:
        reason = str(err)
    raise KvmError(f"hotplug journal {where.journal} is damaged ({reason}); check QEMU with kvm_instance_info, then remove it")


def write(rd: RunDir, where: Paths, entries: list[Entry]) -> None:
    rd.write_atomic(where.names.journal, json.dumps([{"kind": k, "record": r} for k, r in entries], sort_keys=True))


def clear(rd: RunDir, where: Paths) -> None:
    rd.unlink(where.names.journal)
