"""Shared fixtures of the integration tests: real QEMU, real ansible runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faultrun import kill_leftovers
from helpers import qemu_pids_in

if shutil.which("qemu-system-x86_64") is None:  # pragma: no cover - setup problem, not a skip
    raise pytest.UsageError("qemu-system-x86_64 is missing: run `make setup` first")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A failed test's report ends with the last lines of each guest's serial log (what the guest saw)."""
    report = yield
    path = getattr(item, "funcargs", {}).get("runtime_dir")
    if report.when == "call" and report.failed and path:
        for log in sorted(Path(path).glob("*.serial.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            report.sections.append((f"guest serial log {log.name}, last lines", "\n".join(tail)))
    return report


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A short private runtime directory (QMP socket paths must stay < 108 bytes)."""
    path = tempfile.mkdtemp(prefix="kvmhv-", dir="/tmp")
    os.chmod(path, 0o700)
    yield path
    for pid in qemu_pids_in(path):  # a failed test leaves no QEMU behind
        os.kill(pid, 9)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_qemu_left(tmp_path: Path) -> Iterator[None]:
    """QEMUs holding a file in the test's tmp_path (migration targets live there) are killed after
    it, so a failing test leaves no process behind; other tests' QEMUs are never touched."""
    yield
    kill_leftovers()
    for pid in qemu_pids_in(str(tmp_path)):
        os.kill(pid, 9)


@pytest.fixture
def make_disk(tmp_path: Path):
    """Create a disk image: make_disk(name, size_mib=1, fmt='raw') -> path."""

    def _make(name: str, size_mib: int = 1, fmt: str = "raw") -> str:
        path = str(tmp_path / name)
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, path, f"{size_mib}M"], check=True)
        return path

    return _make
