"""A userspace iSCSI target (tgt) on loopback, for pass-through disks in real QEMU.

tgtd runs in the foreground with a private control socket; LUNs are files.
tgtd ignores SIGTERM while it serves targets, so teardown deletes the
targets (forcing off logged-in initiators) and then the system, which
makes tgtd exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from polling import until

IQN = "iqn.2026-11.test.kvmhv:lun"


class Tgt:
    def __init__(self, directory: Path, control: int = 41, port: int = 3261) -> None:
        self.dir, self.control, self.port = directory, str(control), port
        self.proc: subprocess.Popen[bytes] | None = None
        self.tids: list[int] = []

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tgtadm", "-C", self.control, "--lld", "iscsi", *args], capture_output=True, text=True, check=check)

    def __enter__(self) -> Tgt:
        self.proc = subprocess.Popen(["tgtd", "-f", "--iscsi", f"portal=127.0.0.1:{self.port}", "-C", self.control],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepts() -> bool:  # ready once it accepts connections on its portal
            assert self.proc.poll() is None, "tgtd exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        until(accepts, 30, "tgtd did not start", 0.05)
        return self

    def target(self, tid: int, luns: dict[int, int]) -> str:
        """A target with LUNs {lun: size in MiB} backed by files; returns its IQN."""
        iqn = f"{IQN}{tid}"
        self.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
        self.tids.append(tid)
        for lun, size in luns.items():
            path = self.dir / f"tgt{tid}-lun{lun}.img"
            with open(path, "wb") as handle:
                handle.truncate(size << 20)
            self.adm("--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", str(lun), "-b", str(path))
        self.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL")
        return iqn

    def uri(self, iqn: str, lun: int) -> str:
        return f"iscsi://127.0.0.1:{self.port}/{iqn}/{lun}"

    def __exit__(self, *exc: object) -> None:
        for tid in self.tids:
            self.adm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force", check=False)
        self.adm("--op", "delete", "--mode", "system", check=False)
        if self.proc is not None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
