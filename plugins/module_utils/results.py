# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules return, key by key: one ``TypedDict`` per module result (their ``RETURN`` docs).

Like ``types`` (the runtime file), these are ``TypedDict``s because a
result *is* JSON: an operation builds it and ``common.run`` hands it to
``exit_json`` as it is. Keys a result has only on some calls (``diff``,
``devices``, ...) make a result ``total=False``.
"""

from __future__ import annotations

from typing import Mapping, TypedDict

from ansible_collections.kvmhv.qemu.plugins.module_utils.types import HvInfo, Runtime


class PublicDevice(TypedDict):
    """A device as a module returns it: its identity, id and hvinfo (``model.devices.public``)."""

    uuid: str
    id: str
    hvinfo: HvInfo


class Diff(TypedDict):
    """Ansible's ``--diff``: a layout's text, or the comparable fields, before and after."""

    before: str | Mapping[str, object]
    after: str | Mapping[str, object]


class HotplugResult(TypedDict, total=False):
    """``kvm_disk_hotplug`` and ``kvm_nic_hotplug``."""

    changed: bool
    device: PublicDevice | None
    diff: Diff


class Instance(TypedDict):
    """The ``instance`` ``kvm_instance`` returns: where it runs, its devices, the command line a start would use."""

    name: str
    uuid: str | None
    status: str
    pid: int | None
    qmp_socket: str
    runtime_file: str
    serial_log: str
    disks: list[PublicDevice]
    nics: list[PublicDevice]
    cmdline: list[str]


class Placed(TypedDict):
    id: str
    hvinfo: HvInfo


class Medium(TypedDict):
    id: str
    path: str | None


class DeviceChanges(TypedDict):
    """What a converge of a running instance unplugged, plugged, changed the medium of and kept (``ops.converge``)."""

    unplug: list[Placed]
    plug: list[Placed]
    media: list[Medium]
    kept: list[str]


class NewImage(TypedDict):
    """An image a copy_storage target creates for the migration to fill."""

    path: str
    format: str
    size: int


class InstanceDetails(TypedDict, total=False):
    """The keys of a ``kvm_instance`` result that some calls have (``pending`` and ``recovered`` all of them)."""

    pending: list[str]
    recovered: bool
    devices: DeviceChanges
    adopted: dict[str, str]
    notes: list[str]
    created_images: list[NewImage]
    removed_images: list[str]
    confirmed: bool
    diff: Diff


class InstanceResult(InstanceDetails):
    """``kvm_instance``."""

    changed: bool
    instance: Instance


class CopiedStorage(TypedDict):
    """With copy_storage: the disks copied, the target's NBD server, how long the mirrors took to get in step."""

    disks: list[str]
    mirror_ready_ms: int | None
    nbd: str


class Migration(TypedDict, total=False):
    """The figures of a final ``query-migrate`` (``ops.migrate.stats``), and what a copy_storage migration adds."""

    status: str | None
    total_time_ms: int | None
    downtime_ms: int | None
    setup_time_ms: int | None
    transferred_bytes: int | None
    dirty_sync_count: int | None
    removed_source_disks: list[str]
    storage: CopiedStorage


class MigrateResult(TypedDict, total=False):
    """``kvm_migrate``: ``migration`` after a migration, ``copy_storage`` in check mode."""

    changed: bool
    target_uri: str
    migration: Migration
    copy_storage: list[str]


class _Exported(TypedDict, total=False):
    exported: object  # with export: the runtime in the layout asked (a mapping or Ganeti's list)


class InstanceReport(_Exported):
    """One instance as ``kvm_instance_info`` reports it (``ops.info.describe``)."""

    name: str | None
    runtime_file: str
    format_version: int
    current_version: int
    runtime: Runtime
    bus: BusReport
    alive: bool
    pid: int | None
    status: str
    qmp_socket: str | None
    interrupted_hotplugs: list[str]
    drift: list[str]
    notes: list[str]
    disk_sizes: dict[str, int]


class InfoResult(TypedDict, total=False):
    """``kvm_instance_info``: ``instance`` too when one instance was asked by name or path."""

    changed: bool
    instances: list[InstanceReport]
    instance: InstanceReport
    diff: list[Diff]


class PciBus(TypedDict):
    bus: str
    window: list[str]  # the first and last hotplug slot
    used: list[str]
    free: list[str]


class HotplugRoom(TypedDict):
    pci_hotplug_slots: int
    free_pci: int


class Bridge(TypedDict):
    id: str
    addr: str
    capacity: int
    used: list[str]
    free: int


class Ports(TypedDict):
    capacity: int
    used: list[str]
    free: int


class ScsiController(TypedDict):
    id: str
    bus: str
    driver: str
    addr: str | None
    max_targets: int
    used: list[int]
    free: int


class BusReport(TypedDict):
    """Every bus, bridge, port and controller with used, free and capacity (``model.allocator.describe``)."""

    machine: str
    pci: PciBus
    hotplug: HotplugRoom
    bridges: list[Bridge]
    ports: Ports  # q35's root ports, one per hotpluggable device
    scsi: list[ScsiController]
