#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_migrate
short_description: Live-migrate a kvmhv.qemu instance to a waiting target
version_added: "0.1.0"
description:
  - Migrates a running instance to a target started with M(kvmhv.qemu.kvm_instance)
    C(state=incoming) from the source's runtime file, so both sides have the same device tree.
  - Waits for the end of the migration on QMP events, with a deadline. On success the source QEMU
    is stopped and its runtime files are removed (the instance now lives on the target). On failure
    or timeout the migration is cancelled, the source keeps running and the module fails with the reason.
  - Source and target use QEMU's return path, so a target that cannot load the state (for example a
    different device layout) fails the migration instead of being reported as done.
  - With O(copy_storage=true) the disks move too, for hosts without shared storage. The target (started
    with M(kvmhv.qemu.kvm_instance) C(copy_storage=true)) exports fresh disks over NBD; this module mirrors
    every read-write disk into them while the guest runs (C(blockdev-mirror), write-blocking, so it
    converges under any write load), migrates RAM, and switches over at QEMU's C(pre-switchover) pause
    once each mirror has finished its final sync. On any failure it cancels the migration and the
    mirrors, removes its NBD connections and continues the guest, so the source keeps running on its own
    disks. The source's disk images are left in place after a successful migration unless
    O(remove_source_disks=true).
author:
  - kvmhv.qemu contributors (@kvmhv)
options:
  name:
    description: Instance name on this (source) host.
    type: str
    required: true
  target_uri:
    description: Where the target listens, C(tcp:HOST:PORT) or C(unix:PATH).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the migration to complete before cancelling it.
    type: int
    default: 600
  max_bandwidth:
    description: Bandwidth cap in MiB/s for the RAM (QEMU's own default is 32); 0 keeps QEMU's setting.
    type: int
    default: 1024
  copy_storage:
    description:
      - Copy the disks to a target without shared storage (see the description). Needs a C(tcp:) O(target_uri).
      - O(timeout) then bounds each phase (every disk mirror in step, RAM copied, the final sync).
    type: bool
    default: false
  nbd_port:
    description: With O(copy_storage), the port of the target's NBD server (on the O(target_uri) host).
    type: int
    default: 49153
  shared_dirs:
    description:
      - With O(copy_storage), directories on storage both hosts share; disks under them are not copied.
        The target's M(kvmhv.qemu.kvm_instance) must get the same list.
    type: list
    elements: path
    default: []
  remove_source_disks:
    description:
      - With O(copy_storage), delete this host's images of the copied disks once the migration completed
        (they are stale copies then; a later migration back to this host needs their paths free).
      - Off by default, so disk images are never deleted unless asked.
    type: bool
    default: false
extends_documentation_fragment:
  - kvmhv.qemu.common
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Checks that the source runs and answers QMP; migrates nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Start the target from the source's runtime file
  kvmhv.qemu.kvm_instance:
    name: web1
    state: incoming
    runtime: /tmp/web1.runtime.json
    migration_uri: tcp:0.0.0.0:49152
  delegate_to: hv2

- name: Migrate
  kvmhv.qemu.kvm_migrate:
    name: web1
    target_uri: tcp:hv2.example.com:49152
  delegate_to: hv1

- name: Migrate with the disks, to a target started with copy_storage
  kvmhv.qemu.kvm_migrate:
    name: web1
    target_uri: tcp:hv2.example.com:49152
    copy_storage: true
  delegate_to: hv1
"""

RETURN = r"""
migration:
  description: Statistics from QEMU's query-migrate at the end.
  returned: success, not in check mode
  type: dict
  contains:
    status:
      description: Final migration status.
      type: str
      sample: completed
    total_time_ms:
      description: Total migration time.
      type: int
      sample: 2140
    downtime_ms:
      description: Time the guest was paused.
      type: int
      sample: 35
    setup_time_ms:
      description: Setup time.
      type: int
      sample: 3
    transferred_bytes:
      description: RAM bytes sent.
      type: int
      sample: 135266304
    dirty_sync_count:
      description: RAM dirty-sync passes.
      type: int
      sample: 3
    removed_source_disks:
      description: With O(remove_source_disks), the source images deleted after the migration.
      returned: with remove_source_disks
      type: list
      elements: str
      sample: [/srv/kvmhv/web1-0.img]
    storage:
      description: With O(copy_storage), the disks copied, the NBD server and how long the mirrors took to get in step.
      returned: with copy_storage
      type: dict
      sample: {disks: [disk-7c079136], nbd: "10.0.0.12:49153", mirror_ready_ms: 1510}
copy_storage:
  description: In check mode with O(copy_storage), the ids of the disks that would be copied.
  returned: check mode with copy_storage
  type: list
  elements: str
  sample: [disk-7c079136]
target_uri:
  description: The target the instance was migrated to.
  returned: success
  type: str
  sample: unix:/run/kvmhv/web1.migrate.sock
"""

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import migrate


def main() -> None:
    module = new_module({
        "name": {"type": "str", "required": True},
        "target_uri": {"type": "str", "required": True},
        "timeout": {"type": "int", "default": 600},
        "max_bandwidth": {"type": "int", "default": 1024},
        "copy_storage": {"type": "bool", "default": False},
        "nbd_port": {"type": "int", "default": 49153},
        "remove_source_disks": {"type": "bool", "default": False},
        "shared_dirs": {"type": "list", "elements": "path", "default": []},
    })
    run(module, migrate.apply)


if __name__ == "__main__":
    main()
