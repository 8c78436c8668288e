#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_disk_hotplug
short_description: Hotplug or unplug a disk on a running kvmhv.qemu instance
version_added: "0.1.0"
description:
  - Adds a disk at the next free address chosen from the instance's runtime file, or removes it.
  - The instance's recorded hvparams decide the device. On a SCSI instance the disk becomes a SCSI
    device on C(scsi.0) with the lowest free target; otherwise a C(virtio-blk-pci) device at the
    lowest free slot of the PCI window.
  - Add is C(blockdev-add), C(device_add) with the hvinfo, a check in QEMU (C(query-pci) or
    C(query-block)), then the runtime file is saved. Any failure rolls back what was added and leaves
    the runtime file unchanged; the error names the failing step.
  - Remove is C(device_del), a wait for QEMU's C(DEVICE_DELETED) event (a PCI unplug needs the
    guest's ACPI acknowledgement; the request is repeated every 5 seconds until it comes or
    O(unplug_timeout) passes), C(blockdev-del), then the runtime file is saved.
author:
  - kvmhv.qemu contributors (@kvmhv)
options:
  disk:
    description: The disk. It is identified by O(disk.uuid) when given, else by O(disk.path).
    type: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the image or block device (needed to add).
        type: path
      format:
        description: Image format.
        type: str
        choices: [raw, qcow2]
        default: raw
      mode:
        description: Read-write or read-only.
        type: str
        choices: [rw, ro]
        default: rw
      uuid:
        description: Disk UUID; derived from the instance UUID and the path when not given.
        type: str
extends_documentation_fragment:
  - kvmhv.qemu.common
  - kvmhv.qemu.hotplug
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Returns the hvinfo it would allocate; sends nothing to QEMU that changes it.
  diff_mode:
    support: full
    details: Shows the instance's device layout before and after.
"""

EXAMPLES = r"""
- name: Add a data disk
  kvmhv.qemu.kvm_disk_hotplug:
    instance: web1
    disk:
      path: /srv/vm/web1-data2.qcow2
      format: qcow2

- name: Remove it again
  kvmhv.qemu.kvm_disk_hotplug:
    instance: web1
    state: absent
    disk:
      path: /srv/vm/web1-data2.qcow2
"""

RETURN = r"""
device:
  description: The disk that was (or would be) added or removed; null when nothing matched a removal.
  returned: always
  type: dict
  contains:
    uuid:
      description: Disk UUID.
      type: str
      sample: 7c079136-1111-5222-8333-444455556666
    id:
      description: QEMU device, block node and runtime id.
      type: str
      sample: disk-7c079136
    hvinfo:
      description: Where the disk sits.
      type: dict
      sample: {driver: scsi-hd, id: disk-7c079136, bus: scsi.0, channel: 0, scsi-id: 2, lun: 0}
"""

from functools import partial

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import HOTPLUG_ARGS, DISK_OPTIONS, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import hotplug


def main() -> None:
    module = new_module({
        **HOTPLUG_ARGS,
        "disk": {"type": "dict", "required": True, "options": DISK_OPTIONS},
    })
    run(module, partial(hotplug.apply, kind="disks", option="disk"))


if __name__ == "__main__":
    main()
