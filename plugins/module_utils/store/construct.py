# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Building a runtime for a new start: every device placed, the fixed command line recorded."""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.hvparams import extra_args
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kvm_cmd import fixed_argv
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Controller, DiskRecord, NicRecord, Runtime


def new_runtime(name: str, uuid: str, memory: int, vcpus: int, hvparams: Mapping[str, Any], binary: str,
                disks: list[DiskRecord], nics: list[NicRecord], controllers: list[Controller] | None = None,
                warn: Any = None) -> Runtime:
    """A current-format runtime; devices without hvinfo are placed by the allocator (with the controllers they need)."""
    kept = list(controllers or [])
    state = allocator.assign(kept, disks, nics, hvparams)
    if state.shortfall and warn is not None:
        warn(f"only {hvparams['pci_hotplug_slots'] - state.shortfall} of pci_hotplug_slots={hvparams['pci_hotplug_slots']} "
             "PCI devices can be hotplugged: the recorded devices keep their slots and no more bridges or ports fit")
    return {
        "version": FORMAT_VERSION,
        "name": name,
        "uuid": uuid,
        "memory": memory,
        "vcpus": vcpus,
        "hvparams": dict(hvparams),
        "kvm_cmd": fixed_argv(binary, name, uuid, memory, vcpus, hvparams),
        "kvm_extra": extra_args(hvparams),
        "controllers": kept,
        "disks": disks,
        "nics": nics,
    }


def bus_state(runtime: Runtime) -> allocator.BusState:
    return allocator.BusState.build(runtime["hvparams"], runtime.get("controllers", []), [*runtime["disks"], *runtime["nics"]])
