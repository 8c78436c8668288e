"""Start QEMU from a Ganeti runtime file the way Ganeti's KVM hypervisor (2.16.1-3.0) does.

A test stand-in for a Ganeti node, written for these tests (not Ganeti's code):

1. load the runtime and apply Ganeti's own load-time rewrites: ``pci`` slots
   become hvinfo (``hot<nic|disk>-<first uuid group>-pci-<slot>``, driver from
   the runtime's nic_type/disk_type), ``-balloon X[,opts]`` becomes
   ``-device virtio-balloon[,opts]``, ``-localtime`` becomes
   ``-rtc base=localtime``; numbers in ``kvm_cmd`` become strings;
2. run ``kvm_cmd`` followed by, per NIC, a tap opened here and handed over
   (``-netdev tap,id=<hvinfo id or netdev<seq>>,fd=N`` and ``-device`` with the
   hvinfo keys, ``netdev=`` and ``mac=``), the QMP socket in the control
   directory (``-qmp unix:<ctrl>/<name>.qmp,server,nowait``), and per disk a
   ``-device`` with the hvinfo keys and ``drive=<id>`` and the block backend
   ``-drive file=<link>,format=raw,if=none,id=<id>``;
3. QEMU daemonizes and writes the pid file named in ``kvm_cmd``.

It runs as root (Ganeti's ``security_model=none``). Taps get names from the
kernel and join the NIC's ``nicparams.link`` bridge, as Ganeti's kvm-ifup
does. Used as a module (``launch``) or a script, ``python ganeti_launcher.py
RUNTIME CTRL_DIR`` (run it in a network namespace with ``ip netns exec``),
which prints the pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


def upgrade(runtime: list[Any]) -> list[Any]:
    """Ganeti's load-time rewrites of a runtime (what a 2.16.1+ node runs)."""
    kvm_cmd, nics, hvparams = runtime[0], runtime[1], runtime[2]
    disks = runtime[3] if len(runtime) > 3 else []
    argv: list[str] = []
    pos = 0
    while pos < len(kvm_cmd):
        arg = str(kvm_cmd[pos])
        if arg == "-balloon":
            argv += ["-device", ",".join(["virtio-balloon", *str(kvm_cmd[pos + 1]).split(",")[1:]])]
            pos += 2
            continue
        argv += ["-rtc", "base=localtime"] if arg == "-localtime" else [arg]
        pos += 1
    nic_driver = {"paravirtual": "virtio-net-pci"}.get(hvparams.get("nic_type", "paravirtual"), hvparams.get("nic_type"))
    disk_driver = {"paravirtual": "virtio-blk-pci"}.get(hvparams.get("disk_type", "paravirtual"), hvparams.get("disk_type"))
    for kind, driver, dev in [("nic", nic_driver, n) for n in nics] + [("disk", disk_driver, d[0]) for d in disks]:
        if "hvinfo" not in dev:
            slot = dev.pop("pci", None)
            dev["hvinfo"] = {} if slot is None else {"driver": driver, "id": f"hot{kind}-{dev['uuid'].split('-')[0]}-pci-{slot}",
                                                     "addr": hex(slot), "bus": "pci.0"}
    return [argv, nics, hvparams, disks]


def _device(info: dict[str, Any], default_driver: str) -> str:
    head = info.get("driver", default_driver)
    return ",".join([head] + [f"{key}={value}" for key, value in info.items() if key != "driver"])


def open_tap(bridge: str | None) -> tuple[int, str]:
    """A new tap (name chosen by the kernel) on ``bridge``, up."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
    name = ifr[:16].rstrip(b"\0").decode()
    if bridge:
        subprocess.run(["ip", "link", "set", "dev", name, "master", bridge], check=True)
    subprocess.run(["ip", "link", "set", "dev", name, "up"], check=True)
    return fd, name


def command(runtime: list[Any], ctrl_dir: str, tap_fds: list[int]) -> list[str]:
    kvm_cmd, nics, hvparams, disks = runtime
    name = kvm_cmd[kvm_cmd.index("-name") + 1]
    nic_model = {"paravirtual": "virtio-net-pci"}.get(hvparams.get("nic_type", "paravirtual"), hvparams.get("nic_type"))
    argv = list(kvm_cmd)
    for seq, (nic, fd) in enumerate(zip(nics, tap_fds, strict=True)):
        netdev = nic["hvinfo"].get("id", f"netdev{seq}")
        argv += ["-netdev", f"tap,id={netdev},fd={fd}", "-device", f"{_device(nic['hvinfo'], nic_model)},netdev={netdev},mac={nic['mac']}"]
    if not nics:
        argv += ["-net", "none"]
    argv += ["-qmp", f"unix:{ctrl_dir}/{name}.qmp,server,nowait"]
    for disk, link, _uri in disks:
        dev_id = disk["hvinfo"]["id"]
        argv += ["-device", f"{_device(disk['hvinfo'], 'virtio-blk-pci')},drive={dev_id}",
                 "-drive", f"file={link},format=raw,if=none,id={dev_id}"]
    return argv


def launch(runtime_path: str, ctrl_dir: str) -> int:
    """Start the runtime's QEMU (daemonized); returns its pid from the pid file."""
    runtime = upgrade(json.loads(Path(runtime_path).read_text()))
    taps = [open_tap((nic.get("nicparams") or {}).get("link")) for nic in runtime[1]]
    argv = command(runtime, ctrl_dir, [fd for fd, _name in taps])
    try:
        subprocess.run(argv, check=True, pass_fds=[fd for fd, _name in taps], timeout=120)
    finally:
        for fd, _name in taps:
            os.close(fd)
    pidfile = argv[argv.index("-pidfile") + 1]
    return int(Path(pidfile).read_text().split()[0])


class SerialPump(threading.Thread):
    """Copies what QEMU writes to a ``-serial unix:...,server`` socket into a log file, until QEMU goes."""

    def __init__(self, sock_path: str, log_path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        self.log_path = log_path

    def run(self) -> None:
        with open(self.log_path, "ab", buffering=0) as log:
            while chunk := self.sock.recv(65536):
                log.write(chunk)
        self.sock.close()


if __name__ == "__main__":
    print(launch(sys.argv[1], sys.argv[2]))
