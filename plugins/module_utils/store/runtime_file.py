# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runtime files on disk: read through the upgrader, written atomically.

One JSON file per instance, ``<runtime_dir>/<name>.runtime.json``, the
source of truth for its device tree. Reads and writes go through a trusted
``RunDir`` (no symlink is followed, foreign or group-writable files are
refused). A file given by path (``kvm_instance_info path=``, the source
runtime of ``state=incoming``) must be a regular file of the module's user,
not writable by others, and is opened without following a symlink.
"""

from __future__ import annotations

import json
import os
import stat
from typing import cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RUNTIME_SUFFIX, RunDir
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime


def dumps(runtime: Runtime) -> str:
    """Sorted JSON with one field, and one device record, per line: operators read and diff these files.

    Each line comes from the C encoder: the indenting one is pure Python and
    was most of a hotplug's Python time with a hundred devices (profiled,
    benchmarks/README.md).
    """
    lines = []
    for key, value in sorted(runtime.items()):
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            items = ",\n".join("    " + json.dumps(item, sort_keys=True) for item in value)
            lines.append(f"  {json.dumps(key)}: [\n{items}\n  ]")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def parse(text: str, where: str) -> tuple[Runtime, int]:
    """(runtime in the current format, the version it was stored in)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise KvmError(f"runtime file {where} is not valid JSON: {err}") from None
    try:
        return upgrade.upgrade(data, fresh=True)
    except KvmError as err:
        raise KvmError(f"runtime file {where}: {err.msg}") from None


def load(rd: RunDir, name: str) -> tuple[Runtime, int] | None:
    """Instance ``name``'s runtime from ``rd``, or None when it has none."""
    text = rd.read_text(name + RUNTIME_SUFFIX)
    if text is None:
        return None
    return parse(text, rd.join(name + RUNTIME_SUFFIX))


def save(rd: RunDir, name: str, runtime: Runtime) -> None:
    rd.write_atomic(name + RUNTIME_SUFFIX, dumps(runtime))


def _check_trusted(fd: int, path: str) -> None:
    """Refuse anything but a regular file of root or the module's user, not writable by others."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise KvmError(f"runtime file {path} is not a regular file")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise KvmError(f"runtime file {path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}: "
                       "only files of root or the module's user, not writable by others, are trusted")


def _open_trusted(path: str) -> int:
    """A descriptor of ``path``, checked before anything reads it (fdopen of a directory would raise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KvmError(f"runtime file {path} does not exist") from None
    except OSError as err:
        if os.path.islink(path):
            raise KvmError(f"runtime file {path} is a symlink; give the file itself") from None
        raise KvmError(f"cannot read runtime file {path}: {err.strerror}") from None
    try:
        _check_trusted(fd, path)
    except BaseException:
        os.close(fd)  # no descriptor leaks on a refusal
        raise
    return fd


def read_path(path: str) -> tuple[Runtime, int]:
    """A runtime file given by path (any format the upgrader reads), opened safely."""
    with os.fdopen(_open_trusted(path), encoding="utf-8") as handle:
        try:
            text = handle.read()
        except (OSError, UnicodeDecodeError) as err:
            raise KvmError(f"cannot read runtime file {path}: {err}") from None
    return parse(text, path)


def copy(runtime: Runtime) -> Runtime:
    """A deep copy (plain JSON data)."""
    return cast(Runtime, json.loads(json.dumps(runtime)))
