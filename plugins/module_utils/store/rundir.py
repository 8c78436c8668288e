# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime directory, trusted or refused, and every file operation inside it.

The directory holds sockets that control VMs and files whose command lines
get executed, so it is only used when it belongs to the module's user, is
not writable by group or others, is not a symlink, and no ancestor lets
another user swap it. Once opened, every operation is relative to the
directory's file descriptor and never follows a symlink (``O_NOFOLLOW``,
``follow_symlinks=False``), so nothing outside the directory is ever touched.

Files are written atomically (temp file, fsync, rename, fsync of the
directory) with mode 0600; files read back must be regular files owned by
the module's user and not writable by others. Per-instance writer locks are
``flock``s on ``<name>.lock`` that stay valid when another writer removes the
lock file: after locking, the inode is checked against the name and the lock
taken again if the file was replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pwd
import re
import secrets
import socket
import stat
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from ansible_collections.kvmhv.qemu.plugins.module_utils import faults
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

DEFAULT_RUNTIME_DIR = "/run/kvmhv"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
RUNTIME_SUFFIX = ".runtime.json"
UNIX_PATH_MAX = 107
# Suffixes of the files an instance owns in the runtime directory.
JOURNAL_SUFFIX = ".pending.json"
OWN_FILES = (RUNTIME_SUFFIX, JOURNAL_SUFFIX, ".qmp", ".ro.qmp", ".pid", ".serial.log", ".qemu.log")  # in Names' order
INSTANCE_FILES = (*OWN_FILES, ".lock")
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise KvmError(f"instance name {name!r} must be 1-63 of A-Z a-z 0-9 . _ - and start with a letter or digit")
    return name


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _me() -> str:
    return _owner(os.geteuid()).split(" ", maxsplit=1)[0]


def _oserror(err: OSError, what: str, fix: str) -> KvmError:
    return KvmError(f"{what}: {err.strerror or err}; {fix}")


def _check_ancestors(path: str) -> None:
    check_parents(path, f"runtime_dir {path}", "the runtime directory", "runtime_dir")


def check_parents(path: str, what: str, thing: str, choice: str) -> None:
    """No directory on the way to ``path`` may let another user replace it (like OpenSSH's StrictModes).

    The parent is resolved first; each directory from ``/`` down to it must
    belong to root (or this user) and not be writable by group or others,
    unless sticky (like ``/tmp``, where others cannot rename or remove what
    is not theirs). Then nobody else can swap ``path`` or a directory above
    it for a symlink between a check and a use.
    """
    parent = os.path.dirname(path)
    real = os.path.realpath(parent)
    probe = "/"
    for part in [p for p in real.split("/") if p] + [None]:
        st = os.stat(probe)
        trusted_owner = st.st_uid in (0, os.geteuid())
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if not trusted_owner or (writable and not st.st_mode & stat.S_ISVTX):
            raise KvmError(
                f"{what}: its parent {probe} is owned by {_owner(st.st_uid)} with mode "
                f"{stat.S_IMODE(st.st_mode):04o}; another user could replace {thing}, so choose a "
                f"{choice} whose parents belong to root and are not writable by others (or are sticky like /tmp)"
            )
        if part is None:
            break
        probe = os.path.join(probe, part)


def _check_dir_stat(path: str, st: os.stat_result) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise KvmError(f"runtime_dir {path} is a symlink; give the real directory (symlinks are never followed there)")
    if not stat.S_ISDIR(st.st_mode):
        raise KvmError(f"runtime_dir {path} is not a directory; remove it or choose another runtime_dir")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid() or mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise KvmError(
            f"runtime_dir {path} is owned by {_owner(st.st_uid)} with mode {mode:04o}; it must belong to "
            f"{_me()} and not be writable by group or others: chown {_me()} {path} && chmod 0700 {path}, "
            "or choose another runtime_dir (nothing in it was used)"
        )


class Names(NamedTuple):
    """An instance's own files, as names inside the runtime directory (never paths: nothing leaves it)."""

    runtime: str
    journal: str
    qmp: str
    qmp_ro: str
    pid: str
    serial: str
    log: str


@dataclass(frozen=True)
class Paths:
    """The files of one instance inside a runtime directory.

    An adopted instance (a QEMU started by something else, ``kvm_instance
    adopt=``) is reached through that QEMU's own QMP socket and pid file,
    outside the runtime directory: ``adopted_qmp``/``adopted_pidfile`` then
    replace ``qmp``, ``qmp_ro`` (it has a single monitor) and ``pidfile``.
    ``ops.session.locate`` is the one place that sets them; ``own()`` is
    always this collection's own files.
    """

    runtime_dir: str
    name: str
    adopted_qmp: str | None = None
    adopted_pidfile: str | None = None
    adopted_started: int | None = None  # the adopted QEMU's start time, recorded at adoption (a recycled pid is not it)

    @property
    def adopted(self) -> bool:
        return self.adopted_qmp is not None

    def own(self) -> Paths:
        """The same instance's own files (what a start by this collection uses)."""
        return Paths(self.runtime_dir, self.name)

    def file(self, suffix: str) -> str:
        return os.path.join(self.runtime_dir, self.name + suffix)

    @property
    def names(self) -> Names:
        """The instance's own files by their names in the runtime directory (what ``RunDir`` takes)."""
        return Names(*[self.name + suffix for suffix in OWN_FILES])

    def all_names(self) -> list[str]:
        """Base names of every file the instance may own (for ``absent``)."""
        return [self.name + suffix for suffix in INSTANCE_FILES]

    @property
    def runtime(self) -> str:
        return self.file(RUNTIME_SUFFIX)

    @property
    def qmp(self) -> str:
        """The control monitor: used by writers, under the instance lock."""
        return self.adopted_qmp or self.file(".qmp")

    @property
    def qmp_ro(self) -> str:
        """A second monitor for queries, so reads never wait behind a long hotplug or migration."""
        return self.adopted_qmp or self.file(".ro.qmp")

    @property
    def pidfile(self) -> str:
        return self.adopted_pidfile or self.file(".pid")

    @property
    def serial(self) -> str:
        return self.file(".serial.log")

    @property
    def log(self) -> str:
        """QEMU's own stdout and stderr."""
        return self.file(".qemu.log")

    @property
    def lock(self) -> str:
        return self.file(".lock")

    @property
    def journal(self) -> str:
        """Hotplugs in flight: written before QEMU is touched, removed once the runtime file has them."""
        return self.file(JOURNAL_SUFFIX)


def paths(runtime_dir: str, name: str) -> Paths:
    result = Paths(os.path.abspath(runtime_dir), check_name(name))
    if len(result.qmp_ro) > UNIX_PATH_MAX:
        raise KvmError(f"QMP socket path {result.qmp_ro} is longer than {UNIX_PATH_MAX} bytes; use a shorter runtime_dir")
    return result


class RunDir:
    """An open, trusted runtime directory; all operations go through its descriptor."""

    missing = False

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, path: str, create: bool = True) -> RunDir | None:
        """Open (creating it 0700 if ``create``) and check the directory; None if it is missing."""
        path = os.path.abspath(path)
        try:
            _check_ancestors(path)
        except FileNotFoundError:
            if not create:
                return None
            _check_ancestors(_existing_ancestor(path))
        except NotADirectoryError:
            raise KvmError(f"runtime_dir {path}: a parent of it is not a directory; choose another runtime_dir") from None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as err:
                raise _oserror(err, f"cannot create runtime_dir {path}",
                               "create it (owned by the module's user, mode 0700) or choose another runtime_dir") from None
            st = os.lstat(path)
        except NotADirectoryError:
            raise KvmError(f"runtime_dir {path}: a parent of it is not a directory; choose another runtime_dir") from None
        _check_dir_stat(path, st)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
        except OSError as err:
            raise _oserror(err, f"cannot open runtime_dir {path}", "check its permissions") from None
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)
            raise KvmError(f"runtime_dir {path} changed while it was opened; try again")
        return cls(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def join(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- plain operations, never following a symlink -------------------------

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.lstat(name) is not None

    def listdir(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def unlink(self, name: str) -> bool:
        """Remove ``name`` (never a directory); False if it was not there."""
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False
        except OSError as err:
            raise _oserror(err, f"cannot remove {self.join(name)}", "check the runtime directory") from None

    def _open_trusted(self, name: str, flags: int, mode: int = 0o600) -> int:
        """Open ``name`` without following symlinks; it must be our own regular file."""
        try:
            fd = os.open(name, flags | _NOFOLLOW, mode, dir_fd=self.fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise KvmError(f"{self.join(name)} is a symlink; refusing to follow it (remove it)") from None
            raise
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid():
            problem = f"is owned by {_owner(st.st_uid)}, not {_me()}"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        if problem:
            os.close(fd)
            raise KvmError(f"{self.join(name)} {problem}; refusing to use it (remove it)")
        return fd

    def read_text(self, name: str) -> str | None:
        """The content of our own file ``name``, or None if it does not exist."""
        try:
            fd = self._open_trusted(name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise _oserror(err, f"cannot read {self.join(name)}", "check the runtime directory") from None
        with os.fdopen(fd, encoding="utf-8") as handle:
            return handle.read()

    def open_append(self, name: str) -> int:
        """A write-only, append-mode descriptor for a log (created 0600), to hand to QEMU."""
        try:
            return self._open_trusted(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except OSError as err:
            raise _oserror(err, f"cannot open {self.join(name)}", "check that runtime_dir is writable") from None

    def write_atomic(self, name: str, text: str) -> None:
        """Replace ``name`` with ``text``: temp file, fsync, rename, fsync of the directory.

        The temp file is ``.<name>.tmp.<random>`` so the next writer of the
        same instance can remove what a killed writer left (``remove_temps``).
        """
        tmp = f".{name}.tmp.{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=self.fd)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self.fd)
                raise
            os.fsync(self.fd)
        except OSError as err:
            raise _oserror(err, f"cannot write {self.join(name)}", "free space or fix permissions in runtime_dir") from None

    def remove_temps(self, instance: str) -> None:
        """Remove temp files killed writers of ``instance`` left behind (call under its lock)."""
        prefixes = tuple(f".{instance}{suffix}.tmp." for suffix in INSTANCE_FILES)
        for entry in self.listdir():
            if entry.startswith(prefixes):
                self.unlink(entry)

    # -- sockets -------------------------------------------------------------

    def listen(self, name: str) -> socket.socket:
        """A listening unix socket at ``name`` (a leftover socket file there is replaced), mode 0600."""
        st = self.lstat(name)
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise KvmError(f"{self.join(name)} is a directory; remove it")
            self.unlink(name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)
            try:
                sock.bind(self.join(name))
            finally:
                os.umask(old)
            sock.listen(16)
        except OSError as err:
            sock.close()
            raise _oserror(err, f"cannot create socket {self.join(name)}", "check runtime_dir") from None
        return sock

    # -- locks ---------------------------------------------------------------

    def lock_dir(self) -> contextlib.AbstractContextManager[None]:
        """A lock on the directory itself, for files that have no instance lock (no lock file is created)."""
        return contextlib.contextmanager(_lock_fd)(self.fd)

    @contextlib.contextmanager
    def lock(self, name: str, keep_if: str) -> Iterator[None]:
        """Hold the writer lock of instance ``name`` (blocking ``flock``).

        The lock file stays only while the file ``keep_if`` (the runtime file)
        exists: on release without it, the lock file is removed while still
        held; writers waiting on it notice the inode changed and lock again.
        """
        lock_name = name + ".lock"
        while True:
            try:
                fd = os.open(lock_name, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600, dir_fd=self.fd)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise KvmError(f"{self.join(lock_name)} is a symlink; refusing to follow it (remove it)") from None
                raise _oserror(err, f"cannot create lock {self.join(lock_name)}", "check that runtime_dir is writable") from None
            try:
                faults.point("lock-wait")
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                now = self.lstat(lock_name)
                if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            faults.point("locked")
            self.remove_temps(name)
            yield
        finally:
            try:
                if not self.exists(keep_if):
                    self.unlink(lock_name)
            finally:
                os.close(fd)


class MissingDir(RunDir):
    """A runtime directory that does not exist (yet): no instances in it, nothing to write."""

    missing = True

    def __init__(self, path: str) -> None:
        super().__init__(path, -1)

    def lstat(self, name: str) -> os.stat_result | None:
        return None

    def listdir(self) -> list[str]:
        return []

    def read_text(self, name: str) -> str | None:
        return None

    def unlink(self, name: str) -> bool:
        return False

    def remove_temps(self, instance: str) -> None:
        return None


def open_rundir(path: str, create: bool) -> RunDir:
    """The trusted runtime directory at ``path``; a missing one is empty unless ``create``."""
    return RunDir.open(path, create) or MissingDir(os.path.abspath(path))


def _lock_fd(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _existing_ancestor(path: str) -> str:
    """The deepest existing ancestor's child path, for checking the parents of a dir to create."""
    probe = path
    while not os.path.exists(os.path.dirname(probe)):
        probe = os.path.dirname(probe)
    return probe


def list_names(entries: list[str]) -> list[str]:
    names = (e[: -len(RUNTIME_SUFFIX)] for e in entries if e.endswith(RUNTIME_SUFFIX))
    return sorted(n for n in names if NAME_RE.match(n))
