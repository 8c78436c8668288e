# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading QEMU's device tree from QMP answers: the one place that parses them.

Verification after a hotplug, drift reports, reconciliation after an
interrupted run and adoption all ask the same questions (what sits at this
PCI address, which block node backs this device, which fdsets belong to
which device), so the answers are decoded here once.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

PERIPHERAL = "/machine/peripheral/"


def qdev_id(qdev: str | None) -> str | None:
    """The device id in a ``qdev`` field: an id, or a QOM path below ``/machine/peripheral/<id>``."""
    if not qdev:
        return None
    if qdev.startswith(PERIPHERAL):
        return qdev[len(PERIPHERAL):].split("/", 1)[0] or None
    return None if qdev.startswith("/") else qdev


def bus_name(parent_bus: Any) -> str | None:
    """The bus name in a ``parent_bus`` QOM path (``/machine/peripheral/pci.1/pci.1`` -> ``pci.1``)."""
    return parent_bus.rstrip("/").rsplit("/", 1)[-1] if isinstance(parent_bus, str) and parent_bus else None


def blocks_by_device(query_block: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """device id -> its ``query-block`` entry (with ``-blockdev`` the ``device`` field is empty)."""
    found: dict[str, Mapping[str, Any]] = {}
    for block in query_block:
        dev_id = qdev_id(block.get("qdev"))
        if dev_id:
            found[dev_id] = block
    return found


def pci_devices(query_pci: Sequence[Mapping[str, Any]], bus: int = 0) -> dict[int, dict[str, Any]]:
    """slot -> device (function 0) on PCI bus number ``bus`` of a ``query-pci`` answer."""
    found: dict[int, dict[str, Any]] = {}
    for entry in query_pci:
        if entry.get("bus") == bus:
            for dev in entry.get("devices", []):
                if dev.get("function", 0) == 0:
                    found[dev["slot"]] = dev
    return found


def peripherals(qom_list: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """device id -> QEMU type, from ``qom-list /machine/peripheral`` (every device given an id)."""
    found: dict[str, str] = {}
    for prop in qom_list:
        kind = prop.get("type", "")
        if kind.startswith("child<") and kind.endswith(">"):
            found[prop["name"]] = kind[6:-1]
    return found


def fdsets_by_opaque(query_fdsets: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """opaque -> fdset ids (the module names each disk's fdset after the device id)."""
    found: dict[str, list[int]] = {}
    for fdset in query_fdsets:
        for fd in fdset.get("fds", []):
            if fd.get("opaque"):
                found.setdefault(fd["opaque"], []).append(fdset["fdset-id"])
    return {k: sorted(set(v)) for k, v in found.items()}


def fdset_fds(query_fdsets: Sequence[Mapping[str, Any]]) -> dict[int, list[int]]:
    """fdset id -> the descriptor numbers inside QEMU (readable as /proc/<pid>/fd/<n>)."""
    return {fdset["fdset-id"]: [fd["fd"] for fd in fdset.get("fds", [])] for fdset in query_fdsets}
