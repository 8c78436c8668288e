# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration URIs: the one grammar both ends of a migration accept."""

from __future__ import annotations

import re
from typing import NamedTuple

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

_TCP_RE = re.compile(r"^tcp:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252}):([0-9]{1,5})\Z")
_UNIX_RE = re.compile(r"^unix:(/[^\x00-\x1f]+)\Z")


def port_ok(digits: str) -> bool:
    """Whether a port the patterns matched (1-5 digits) is one QEMU can use, 1-65535: shared by
    migration and disk uris, so both refuse what QEMU would refuse only at start or hotplug."""
    return 0 < int(digits) < 65536


class MigrationUri(NamedTuple):
    uri: str
    kind: str  # tcp or unix
    host: str | None
    port: int | None
    path: str | None


def parse(uri: object, option: str) -> MigrationUri:
    """``tcp:HOST:PORT`` or ``unix:/PATH``, else a KvmError naming ``option``."""
    if isinstance(uri, str):
        tcp = _TCP_RE.match(uri)
        if tcp and port_ok(tcp.group(2)):
            return MigrationUri(uri, "tcp", tcp.group(1), int(tcp.group(2)), None)
        unix = _UNIX_RE.match(uri)
        if unix:
            return MigrationUri(uri, "unix", None, None, unix.group(1))
    raise KvmError(f"{option} {uri!r} must be tcp:HOST:PORT (port 1-65535) or unix:/PATH")


def check_nbd_port(target: MigrationUri, port: object, option: str) -> int:
    """The NBD port of a copy_storage migration: both ends check it alike (a tcp migration address, another port)."""
    if target.kind != "tcp":
        raise KvmError(f"copy_storage needs a tcp:HOST:PORT {option}: the disks are exported over NBD on that address")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536 or port == target.port:
        raise KvmError(f"nbd_port {port!r} must be a TCP port (1-65535) other than the migration port")
    return port
