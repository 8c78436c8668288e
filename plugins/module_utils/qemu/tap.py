# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tap devices for hotplugged NICs, opened here and passed to QEMU as a file descriptor.

A tap that did not exist is created non-persistent: it lives exactly as
long as someone holds its descriptor, so it disappears by itself when QEMU
drops the netdev (or dies) and nothing is left behind. An existing
(persistent) tap is only opened, never removed.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000


def exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KvmError(f"ip {' '.join(args)}: {done.stderr.strip() or 'failed'}", "tap")


def open_tap(ifname: str, bridge: str | None) -> tuple[int, bool]:
    """Open (creating if needed) tap ``ifname``, attach it to ``bridge``, bring it up.

    Returns (fd, created). The caller closes the fd once QEMU holds its copy.
    """
    if bridge and not exists(bridge):
        raise KvmError(f"bridge {bridge} does not exist", "tap")
    created = not exists(ifname)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise KvmError(f"cannot open /dev/net/tun: {err.strerror}", "tap") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        if bridge:
            _ip("link", "set", "dev", ifname, "master", bridge)
        _ip("link", "set", "dev", ifname, "up")
    except OSError as err:
        os.close(fd)
        raise KvmError(f"cannot open tap {ifname}: {err.strerror}", "tap") from None
    except KvmError:
        os.close(fd)
        raise
    return fd, created
