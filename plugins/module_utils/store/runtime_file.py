# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runtime files: where an instance's state lives and how it is read and written.

One JSON file per instance in the runtime directory, the source of truth for
its device tree. Writes are atomic (temp file, fsync, rename, fsync of the
directory) with mode 0600; writers hold a per-instance ``flock``. Every read
goes through the upgrader.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv as cmdline
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.hvparams import extra_args
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION, upgrade

DEFAULT_RUNTIME_DIR = "/run/kvmhv"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SUFFIX = ".runtime.json"
UNIX_PATH_MAX = 107


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise KvmError(f"instance name {name!r} must be 1-63 of A-Z a-z 0-9 . _ - and start with a letter or digit")
    return name


@dataclass(frozen=True)
class Paths:
    """Every file an instance owns in its runtime directory."""

    runtime_dir: str
    name: str

    def _file(self, suffix: str) -> str:
        return os.path.join(self.runtime_dir, self.name + suffix)

    @property
    def runtime(self) -> str:
        return self._file(SUFFIX)

    @property
    def qmp(self) -> str:
        return self._file(".qmp")

    @property
    def pidfile(self) -> str:
        return self._file(".pid")

    @property
    def serial(self) -> str:
        return self._file(".serial.log")

    @property
    def lock(self) -> str:
        return self._file(".lock")

    def all_files(self) -> list[str]:
        return [self.runtime, self.qmp, self.pidfile, self.serial, self.lock]


def paths(runtime_dir: str, name: str) -> Paths:
    result = Paths(os.path.abspath(runtime_dir), check_name(name))
    if len(result.qmp) > UNIX_PATH_MAX:
        raise KvmError(f"QMP socket path {result.qmp} is longer than {UNIX_PATH_MAX} bytes; use a shorter runtime_dir")
    return result


def ensure_dir(runtime_dir: str) -> None:
    """Create the runtime directory (0700): it holds sockets that control VMs."""
    os.makedirs(runtime_dir, mode=0o700, exist_ok=True)


def read_file(path: str) -> tuple[dict[str, Any], int]:
    """Load a runtime file through the upgrader: (runtime, stored version)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise KvmError(f"runtime file {path} does not exist") from None
    except OSError as err:
        raise KvmError(f"cannot read runtime file {path}: {err.strerror}") from None
    except ValueError as err:
        raise KvmError(f"runtime file {path} is not valid JSON: {err}") from None
    try:
        return upgrade(data, fresh=True)
    except KvmError as err:
        raise KvmError(f"runtime file {path}: {err}") from None


def dumps(runtime: dict[str, Any]) -> str:
    """Indented, sorted JSON: operators read and diff these files.

    Indentation costs the pure-Python encoder (about 0.1 ms for a typical
    instance, a few ms at 200 devices), small next to the QMP round trips.
    """
    return json.dumps(runtime, indent=2, sort_keys=True) + "\n"


def write_file(path: str, data: Any) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (0600)."""
    text = data if isinstance(data, str) else dumps(data)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(where: Paths) -> Iterator[None]:
    """Hold the instance's writer lock (blocking ``flock``, released on exit or death)."""
    ensure_dir(where.runtime_dir)
    fd = os.open(where.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def list_names(runtime_dir: str) -> list[str]:
    try:
        entries = os.listdir(runtime_dir)
    except FileNotFoundError:
        return []
    return sorted(e[: -len(SUFFIX)] for e in entries if e.endswith(SUFFIX) and NAME_RE.match(e[: -len(SUFFIX)]))


def new_runtime(
    name: str,
    uuid: str,
    memory: int,
    vcpus: int,
    hvparams: dict[str, Any],
    binary: str,
    disks: list[dict[str, Any]],
    nics: list[dict[str, Any]],
) -> dict[str, Any]:
    """A current-format runtime for a new start; places devices without hvinfo."""
    allocator.assign(disks, nics, hvparams)
    return {
        "version": FORMAT_VERSION,
        "name": name,
        "uuid": uuid,
        "memory": memory,
        "vcpus": vcpus,
        "hvparams": dict(hvparams),
        "kvm_cmd": cmdline.fixed_argv(binary, name, uuid, memory, vcpus, hvparams),
        "kvm_extra": extra_args(hvparams),
        "disks": disks,
        "nics": nics,
    }


def bus_state(runtime: dict[str, Any]) -> allocator.BusState:
    return allocator.BusState.from_devices([*runtime["disks"], *runtime["nics"]])
