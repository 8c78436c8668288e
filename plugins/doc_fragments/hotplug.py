# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options both hotplug modules take (module_utils/common.py HOTPLUG_ARGS)."""

    DOCUMENTATION = r"""
options:
  instance:
    description: Name of the running instance.
    type: str
    required: true
  state:
    description: Whether the device should be plugged.
    type: str
    choices: [present, absent]
    default: present
  unplug_timeout:
    description:
      - Seconds to wait for QEMU's C(DEVICE_DELETED) event; a PCI unplug needs the guest's ACPI acknowledgement.
      - While no answer comes, C(device_del) is sent again every 5 seconds; a guest drops a request that arrives
        while it boots.
      - A QEMU that exits during the wait fails the task at once, not at the timeout.
    type: int
    default: 30
"""
