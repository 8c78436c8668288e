"""Run a module in the background and stop it at a named step (the collection's fault points).

The module itself stops (SIGSTOP) where ``KVMHV_FAULT_STOP`` says and leaves
a marker with its pid, so a test kills exactly the module process at an
exact step boundary: never the ``ansible`` CLI's process group (Ansible's
worker calls setsid) and never after a guessed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ansible_cli import VENV_BIN, ansible_env
from polling import until

RUNNING: list[FaultRun] = []


def kill_leftovers() -> None:
    """Kill what a failed test left: its modules (maybe stopped) and their ansible processes."""
    while RUNNING:
        run = RUNNING.pop()
        for marker in Path(run.markers).glob("*.*"):
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(marker.read_text()), signal.SIGKILL)
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


class FaultRun:
    def __init__(self, module: str, args: dict[str, Any], stop: tuple[str, ...] = (), mark: tuple[str, ...] = (),
                 netns: str | None = None) -> None:
        self.markers = tempfile.mkdtemp(prefix="kvmhv-fault-")
        env = ansible_env({"KVMHV_FAULT_DIR": self.markers, "KVMHV_FAULT_STOP": ",".join(stop), "KVMHV_FAULT_MARK": ",".join(mark)})
        argv = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", f"kvmhv.qemu.{module}",
                "-a", json.dumps(args)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        RUNNING.append(self)

    def wait(self, step: str, timeout: float = 120) -> int:
        """The pid of the module process once it reached ``step`` (polling the marker directory)."""
        def reached() -> list[Path]:
            if self.proc.poll() is not None and not list(Path(self.markers).glob(f"{step}.*")):
                raise AssertionError(f"the module ended before reaching {step}: {self.result()}")
            return sorted(Path(self.markers).glob(f"{step}.*"))

        return int(until(reached, timeout, f"the module did not reach {step}")[0].read_text())

    def stopped(self, pid: int, timeout: float = 30) -> None:
        """Wait until ``pid`` is stopped (state T) after it announced its stop."""
        until(lambda: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", timeout,
              f"module {pid} never stopped", 0.01)

    def blocked_on_lock(self, pid: int, timeout: float = 30) -> bool:
        """Wait until ``pid`` sleeps in flock (True), or stops at its ``locked`` point instead (False)."""
        def decided() -> str | None:
            if list(Path(self.markers).glob(f"locked.{pid}")):
                return "took it"
            return "waits" if Path(f"/proc/{pid}/wchan").read_text() == "locks_lock_inode_wait" else None

        return until(decided, timeout, f"module {pid} neither waited for the lock nor took it", 0.01) == "waits"

    def kill(self, step: str) -> None:
        pid = self.wait(step)
        self.stopped(pid)
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(120)

    def resume(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)

    def result(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=300)
        try:
            return json.loads(out)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            return {"failed": True, "msg": f"no JSON result (rc={self.proc.returncode}): {out[-500:]} {err[-500:]}"}
