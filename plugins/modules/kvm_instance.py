#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kvm_instance
short_description: Run, stop or remove a QEMU/KVM instance with a deterministic device model
version_added: "0.1.0"
description:
  - Starts a QEMU instance whose disks and NICs sit at explicit, recorded addresses (a PCI slot from 0x10
    up on C(pci.0), on a C(pci-bridge) or a C(pcie-root-port) of its own on C(q35), or a SCSI target of a
    recorded SCSI controller), stops it, removes it, starts it as a live-migration target from another host's
    runtime file, or adopts a QEMU that Ganeti started.
  - The runtime file (C(<runtime_dir>/<name>.runtime.json)) is written before QEMU starts and
    describes exactly what runs; stopping and starting again keeps every address.
  - On a running instance the O(disks) and O(nics) lists are converged live. Devices the instance lacks are
    hotplugged in list order at the addresses a cold start would give them, all in one QMP burst and all or
    nothing; with O(purge=true) devices it has and the lists lack are unplugged together (their unplugs awaited
    concurrently), each reported; without it they are kept and reported. A C(scsi-cd)'s medium is changed or
    ejected live. Any other change of an existing device (path, format, mode, type, network) is an error.
  - On a running instance, changed memory, vcpus or hvparams are reported as pending until the next
    start; nothing is silently ignored.
author:
  - kvmhv.qemu contributors (@kvmhv)
options:
  name:
    description: Instance name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  state:
    description:
      - C(running) starts the instance (or restarts it from its runtime file if it is stopped or died).
      - C(stopped) asks the guest to power off (ACPI), waits up to O(shutdown_timeout), then quits QEMU;
        the runtime file stays.
      - C(absent) stops QEMU and removes the instance's files in O(runtime_dir) (runtime file, journal, sockets, pid
        file, logs) and the images a migration target created for C(copy_storage) (RV(removed_images)).
      - C(incoming) starts the instance as a migration target from the runtime file O(runtime),
        listening on O(migration_uri).
    type: str
    choices: [running, stopped, absent, incoming]
    default: running
  uuid:
    description: Instance UUID; derived from the name when not given.
    type: str
  memory:
    description: Memory in MiB.
    type: int
    default: 256
  vcpus:
    description: Number of virtual CPUs.
    type: int
    default: 1
  hvparams:
    description:
      - Hypervisor parameters over the collection defaults
        (R(the hvparams guide,ansible_collections.kvmhv.qemu.docsite.hvparams) has them all in one table), for example
        C(disk_type) (paravirtual, scsi-hd, scsi-block, scsi-generic, scsi-cd, ide), C(nic_type),
        C(scsi_controller_type) (lsi, megasas, virtio-scsi-pci), C(kvm_pci_reservations),
        C(pci_hotplug_slots) (how many PCI devices can still be hotplugged after start, default 32; the
        bridges or root ports they need are created at start), C(machine_type) (C(pc), C(q35),
        C(pc-i440fx-X.Y), C(pc-q35-X.Y)), C(accel) (kvm, tcg), C(cpu_type), C(kernel_path), C(initrd_path),
        C(kernel_args), C(kvm_extra).
      - Unknown keys or values are errors.
    type: dict
    default: {}
  runtime:
    description: For O(state=incoming), the source's runtime file (any format this collection reads).
    type: path
  migration_uri:
    description: For O(state=incoming), where to listen, C(tcp:HOST:PORT) or C(unix:PATH).
    type: str
  shutdown_timeout:
    description: Seconds O(state=stopped) waits for the guest to power off before quitting QEMU.
    type: int
    default: 30
  purge:
    description:
      - On a running instance, unplug the disks and NICs it has that O(disks) and O(nics) lack. Without it they
        are kept and reported as a warning.
      - Unplugs are requested together and awaited concurrently; those that complete are saved, those that time
        out stay recorded and the task fails naming them.
    type: bool
    default: false
  unplug_timeout:
    description: Seconds a live convergence waits for the guest to release the devices it unplugs.
    type: int
    default: 30
  adopt:
    description:
      - Take over a QEMU that something else started (Ganeti) without restarting or changing it, with
        O(state=running). Its runtime file (any Ganeti layout from 2.0 to 3.1) is read and upgraded, checked
        against the live QEMU (C(query-pci), C(query-block), QOM), and the instance is recorded in O(runtime_dir)
        with that QEMU's QMP socket and pid file; a mismatch fails, listing every difference.
      - From then on it is an instance like any other (info, hotplug, migration). O(state=absent) stops that QEMU
        and removes only this collection's files; O(state=stopped) stops it, and a later start runs this
        collection's own QEMU.
      - O(disks), O(nics) and O(hvparams) must be left out (the instance is what its runtime file and QEMU say).
    type: dict
    suboptions:
      runtime:
        description: The runtime file of the QEMU (Ganeti's C(/var/run/ganeti/kvm-hypervisor/conf/<name>.runtime)).
        type: path
        required: true
      qmp:
        description: Its QMP socket (Ganeti's C(.../ctrl/<name>.qmp)); opened without following a symlink.
        type: path
        required: true
      pidfile:
        description: Its pid file, written by QEMU's C(-pidfile) (Ganeti's C(.../pid/<name>)); the process must name it
          on its command line.
        type: path
        required: true
  copy_storage:
    description:
      - For O(state=incoming), a target without the source's storage. This host creates every read-write
        disk of O(runtime) that has a path, at the same path, in the same format and with the virtual
        size from O(disk_sizes), never over an existing file (free space is checked first), and exports
        each over NBD on the address of O(migration_uri), port O(nbd_port), for the source's
        M(kvmhv.qemu.kvm_migrate) C(copy_storage=true) to mirror into. Read-only disks and disks QEMU
        reaches by URI must be reachable here as with shared storage.
      - The runtime file records the images this host created while the migration is pending, so
        O(state=absent) removes exactly those (and never a file that was there before).
      - Run O(state=incoming) again once the migration completed to confirm it. The NBD server closes
        and the images become the instance's own disks.
    type: bool
    default: false
  disk_sizes:
    description:
      - With O(copy_storage), the virtual size in bytes of each copied disk, by disk uuid, as
        M(kvmhv.qemu.kvm_instance_info) reports it on the source (C(instance.disk_sizes)).
    type: dict
  nbd_port:
    description: With O(copy_storage), the TCP port of the NBD server the disks are exported on.
    type: int
    default: 49153
  shared_dirs:
    description:
      - With O(copy_storage), directories on storage this host shares with the source; disks under them
        are not copied (they are used in place, as in a shared-storage migration). Give the source's
        M(kvmhv.qemu.kvm_migrate) the same list.
    type: list
    elements: path
    default: []
  only_if_incoming:
    description:
      - With O(state=absent), remove the instance only while it is a migration target whose migration has
        not arrived (runtime marked incoming, QEMU gone or still waiting); anything else is left alone
        with a warning. The rollback of a failed migration uses it, so it never removes a running guest
        or an unrelated instance of the same name.
    type: bool
    default: false
extends_documentation_fragment:
  - kvmhv.qemu.common
  - kvmhv.qemu.devices.disks
  - kvmhv.qemu.devices.nics
  - kvmhv.qemu.attributes
attributes:
  check_mode:
    support: full
    details: Plans only; returns the command line and the hvinfo it would allocate.
  diff_mode:
    support: full
    details: Shows memory, vcpus, hvparams, disks and NICs before and after a start; the device layout before and
      after a live convergence.
"""

EXAMPLES = r"""
- name: A VM with two SCSI disks and a bridged NIC
  kvmhv.qemu.kvm_instance:
    name: web1
    memory: 2048
    vcpus: 2
    disks:
      - path: /srv/vm/web1-root.qcow2
        format: qcow2
      - path: /srv/vm/web1-data.img
    nics:
      - mac: "52:54:00:12:34:56"
        network: {type: tap, ifname: tap-web1, bridge: br0}
    hvparams:
      disk_type: scsi-hd
      scsi_controller_type: virtio-scsi-pci

- name: Stop it (ACPI powerdown, 60 s grace)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: stopped
    shutdown_timeout: 60

- name: Adopt a QEMU that Ganeti started (nothing in QEMU changes)
  kvmhv.qemu.kvm_instance:
    name: vm1.example.org
    adopt:
      runtime: /var/run/ganeti/kvm-hypervisor/conf/vm1.example.org.runtime
      qmp: /var/run/ganeti/kvm-hypervisor/ctrl/vm1.example.org.qmp
      pidfile: /var/run/ganeti/kvm-hypervisor/pid/vm1.example.org

- name: Start a migration target from the source's runtime file
  kvmhv.qemu.kvm_instance:
    name: web1
    state: incoming
    runtime: /tmp/web1.runtime.json
    migration_uri: tcp:0.0.0.0:49152

- name: A target without shared storage (creates and exports the disks)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: incoming
    runtime: /tmp/web1.runtime.json
    migration_uri: tcp:10.0.0.12:49152
    copy_storage: true
    disk_sizes: "{{ web1_info.instance.disk_sizes }}"

- name: Undo a failed migration target (never a running guest)
  kvmhv.qemu.kvm_instance:
    name: web1
    state: absent
    only_if_incoming: true
"""

RETURN = r"""
instance:
  description: The instance after the run (or as planned in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: web1
    uuid:
      description: Instance UUID.
      type: str
      sample: 3f1c9c2e-8a4b-5d6e-9f00-112233445566
    status:
      description:
      - QEMU's run state (running, paused, incoming, postmigrate, ...), or stopped or absent; C(incoming-failed)
        for a migration target whose QEMU is gone (the instance lives on the source).
      type: str
      sample: running
    pid:
      description: QEMU's process id when it runs.
      type: int
      sample: 4242
    qmp_socket:
      description: QMP socket path.
      type: str
      sample: /run/kvmhv/web1.qmp
    runtime_file:
      description: Runtime file path.
      type: str
      sample: /run/kvmhv/web1.runtime.json
    serial_log:
      description: File receiving the guest's serial console.
      type: str
      sample: /run/kvmhv/web1.serial.log
    disks:
      description: Disks with uuid, device id and hvinfo.
      type: list
      elements: dict
      sample:
        - uuid: 7c079136-1111-5222-8333-444455556666
          id: disk-7c079136
          hvinfo: {driver: scsi-hd, id: disk-7c079136, bus: scsi.0, channel: 0, scsi-id: 0, lun: 0}
    nics:
      description: NICs with uuid, device id and hvinfo.
      type: list
      elements: dict
      sample:
        - uuid: 0a1b2c3d-1111-5222-8333-444455556666
          id: nic-0a1b2c3d
          hvinfo: {driver: virtio-net-pci, id: nic-0a1b2c3d, bus: pci.0, addr: "0x10"}
    cmdline:
      description: QEMU's argv (planned in check mode).
      type: list
      elements: str
      sample: [qemu-system-x86_64, -name, web1, -machine, "pc,accel=kvm"]
pending:
  description: Requested changes that take effect at the next start of a running instance.
  returned: always
  type: list
  elements: str
  sample: ["memory: 256 -> 512"]
recovered:
  description: True when a QEMU that had died was started again from its runtime file.
  returned: always
  type: bool
  sample: false
devices:
  description:
    - The live convergence of a running instance (planned in check mode). C(plug) and C(unplug) list each device
      with the hvinfo it gets or had, C(media) the C(scsi-cd) media changed (C(path) null for an eject), C(kept)
      the ids the lists lack, left in place without O(purge).
  returned: when a running instance was converged
  type: dict
  sample: {plug: [{id: disk-7c079136, hvinfo: {driver: virtio-blk-pci, id: disk-7c079136, bus: pci.0, addr: "0x12"}}],
           unplug: [], media: [], kept: []}
adopted:
  description: The QEMU taken over (O(adopt)).
  returned: with adopt
  type: dict
  sample: {runtime: /var/run/ganeti/kvm-hypervisor/conf/vm1.runtime, qmp: /var/run/ganeti/kvm-hypervisor/ctrl/vm1.qmp,
           pidfile: /var/run/ganeti/kvm-hypervisor/pid/vm1}
notes:
  description: What reading the adopted runtime file changed or assumed (rewritten options, derived uuids, ...).
  returned: with adopt
  type: list
  elements: str
  sample: ["kvm_cmd: rewritten for current QEMU: -balloon"]
created_images:
  description: With O(copy_storage), the images this target creates (or would create, in check mode).
  returned: when state=incoming starts a target
  type: list
  elements: dict
  sample: [{path: /srv/kvmhv/web1-0.img, format: raw, size: 67108864}]
removed_images:
  description: Images a migration target had created that O(state=absent) removed (or would remove).
  returned: state=absent
  type: list
  elements: str
  sample: [/srv/kvmhv/web1-0.img]
confirmed:
  description: True when O(state=incoming) found the migration arrived and confirmed it.
  returned: when the migration arrived
  type: bool
  sample: true
"""

from ansible_collections.kvmhv.qemu.plugins.module_utils.common import DISK_OPTIONS, DISK_RULES, NIC_OPTIONS, UNPLUG_TIMEOUT, new_module, run
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import adopt, incoming, instance


def main() -> None:
    module = new_module(
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["running", "stopped", "absent", "incoming"], "default": "running"},
            "uuid": {"type": "str"},
            "memory": {"type": "int", "default": 256},
            "vcpus": {"type": "int", "default": 1},
            "disks": {"type": "list", "elements": "dict", "options": DISK_OPTIONS, "default": [], **DISK_RULES},
            "nics": {"type": "list", "elements": "dict", "options": NIC_OPTIONS, "default": []},
            "hvparams": {"type": "dict", "default": {}},
            "runtime": {"type": "path"},
            "migration_uri": {"type": "str"},
            "shutdown_timeout": {"type": "int", "default": 30},
            "purge": {"type": "bool", "default": False},
            "unplug_timeout": UNPLUG_TIMEOUT,
            "adopt": {"type": "dict", "options": {"runtime": {"type": "path", "required": True},
                                                  "qmp": {"type": "path", "required": True},
                                                  "pidfile": {"type": "path", "required": True}}},
            "copy_storage": {"type": "bool", "default": False},
            "disk_sizes": {"type": "dict"},
            "nbd_port": {"type": "int", "default": 49153},
            "only_if_incoming": {"type": "bool", "default": False},
            "shared_dirs": {"type": "list", "elements": "path", "default": []},
        },
        required_if=[("state", "incoming", ("runtime", "migration_uri")), ("copy_storage", True, ("disk_sizes",))],
        # adopt takes the instance as its runtime file and QEMU have it
        mutually_exclusive=[("adopt", other) for other in ("disks", "nics", "hvparams", "runtime", "migration_uri")],
    )
    if module.params["adopt"]:
        run(module, adopt.apply)
    elif module.params["state"] == "incoming":
        run(module, incoming.apply)
    else:
        run(module, instance.apply)


if __name__ == "__main__":
    main()
