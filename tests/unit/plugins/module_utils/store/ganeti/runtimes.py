"""Ganeti runtime files for the tests of ``store.ganeti``: the fixtures (one per layout variation) and how to read them.

Not a test module: the test files of this directory share it (``from .runtimes import ...``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade

FIXTURES = Path(__file__).parent / "fixtures"
LINK0 = "/var/run/ganeti/instance-disks/vm1.example.org:0"
LINK1 = "/var/run/ganeti/instance-disks/vm1.example.org:1"
INSTANCE_UUID = "0f7b3c1e-2a44-4d0b-8f3e-6c1d2b3a4f50"


def names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def raw(name: str) -> Any:
    """A fixture as Ganeti wrote it."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def read(name: str) -> dict:
    """A fixture read through the upgrader (fresh: as from the file)."""
    rt, version = upgrade.upgrade(raw(name), fresh=True)
    assert version == 0 and rt["version"] == upgrade.FORMAT_VERSION
    return dict(rt)


def read_data(data: Any) -> dict:
    return dict(upgrade.upgrade(data)[0])


def pci_slots(rt: dict) -> set:
    """The whole slots taken on pci.0."""
    return {addr[0] for addr in construct.bus_state(rt).used.get("pci.0", set()) if addr[1] is None}


def hv(dev: dict) -> tuple:
    """(id, driver, bus, addr or scsi-id) of a record."""
    info = dev["hvinfo"]
    return info["id"], info["driver"], info["bus"], info.get("addr", info.get("scsi-id"))
