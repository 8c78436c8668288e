"""Small helpers shared by the integration tests (real QEMU over QMP, real files)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.start import start
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.stop import remove_plumbing
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import Paths, RunDir, paths
from qemu.qmp import QMPClient


def qmp(sock: str, *commands: tuple[str, dict[str, Any] | None]) -> list[Any]:
    """Run QMP commands on ``sock`` in one connection; returns their results."""

    async def go() -> list[Any]:
        client = QMPClient("kvmhv-test")
        await client.connect(sock)
        try:
            return [await client.execute(cmd, args) for cmd, args in commands]
        finally:
            await client.disconnect()

    return asyncio.run(go())


def q(sock: str, cmd: str, args: dict[str, Any] | None = None) -> Any:
    return qmp(sock, (cmd, args))[0]


def pci_slots(sock: str) -> dict[int, dict[str, Any]]:
    """slot -> device (function 0) on PCI bus 0."""
    return {d["slot"]: d for bus in q(sock, "query-pci") if bus["bus"] == 0 for d in bus["devices"] if d["function"] == 0}


def block_by_qdev(sock: str) -> dict[str, dict[str, Any]]:
    """device id -> query-block entry (qdev is the id, or a QOM path below it)."""
    found = {}
    for block in q(sock, "query-block"):
        qdev = block.get("qdev") or ""
        if qdev.startswith("/machine/peripheral/"):
            qdev = qdev.split("/")[3]
        if qdev:
            found[qdev] = block
    return found


def assert_matches_runtime(sock: str, rt: dict[str, Any]) -> None:
    """Every controller and device of the runtime sits in QEMU exactly where its hvinfo says (asked with
    qom-get, independently of the collection's own drift check), and nothing else sits in the window."""
    records = [c["hvinfo"] for c in rt.get("controllers", [])] + [d["hvinfo"] for d in rt["disks"] + rt["nics"]]
    asks = []
    for info in records:
        path = f"/machine/peripheral/{info['id']}"
        asks += [("qom-get", {"path": path, "property": "type"}), ("qom-get", {"path": path, "property": "parent_bus"})]
        if "addr" in info:
            asks.append(("qom-get", {"path": path, "property": "addr"}))
        if "scsi-id" in info:
            asks.append(("qom-get", {"path": path, "property": "scsi-id"}))
    answers = iter(qmp(sock, *asks))
    for info in records:
        kind, bus = next(answers), next(answers).rsplit("/", 1)[-1]
        assert (kind, bus) == (info["driver"], info["bus"]), (info, kind, bus)
        if "addr" in info:
            slot, _dot, function = info["addr"].partition(".")
            assert next(answers) == int(slot, 16) << 3 | int(function or "0", 16), info
        if "scsi-id" in info:
            assert next(answers) == info["scsi-id"], info
    blocks = block_by_qdev(sock)
    for dev in rt["disks"]:
        if dev.get("path") or dev.get("uri"):
            assert dev["hvinfo"]["id"] in blocks, (dev["hvinfo"]["id"], sorted(blocks))
    q35 = "q35" in rt["hvparams"]["machine_type"]
    root = "pcie.0" if q35 else "pci.0"
    window = range(rt["hvparams"]["kvm_pci_reservations"], 0x1F if q35 else 0x20)  # q35's 0x1f is the ICH9 block
    ours = {int(i["addr"].split(".")[0], 16) for i in records if "addr" in i and i["bus"] == root}
    assert {s for s in pci_slots(sock) if s in window} == ours


def alive(pid: int | None) -> bool:
    """True for a live process (daemonized QEMUs are reparented; a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def files_of(runtime_dir: str, name: str) -> list[str]:
    return sorted(p.name for p in Path(runtime_dir).glob(f"{name}.*"))


def qemu_pids_in(runtime_dir: str) -> list[int]:
    """Live QEMU processes of ``runtime_dir``: they hold a file there (the serial log) or name it on their command line."""
    prefix = runtime_dir.rstrip("/") + "/"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        try:
            if not os.readlink(f"/proc/{entry}/exe").endswith("qemu-system-x86_64"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                named = runtime_dir.encode() in handle.read()
            held = any(os.readlink(f"/proc/{entry}/fd/{fd}").startswith(prefix) for fd in os.listdir(f"/proc/{entry}/fd"))
        except OSError:
            continue
        if named or held:
            pids.append(int(entry))
    return pids


def block_nodes(sock: str) -> set[str]:
    return {n["node-name"] for n in q(sock, "query-named-block-nodes", {"flat": True}) if not n["node-name"].startswith("#")}


def read_rt(path: str) -> dict[str, Any]:
    """A runtime file through the collection's own reader (upgraded, validated)."""
    return dict(runtime_file.read_path(path)[0])


def _session(rd: RunDir, runtime_dir: str, name: str) -> Session:
    return Session(Call({}), rd, paths(runtime_dir, name), writer=True)


def start_runtime(runtime_dir: str, name: str, rt: dict[str, Any], user: str = "kvmhv-qemu") -> int:
    """Start ``rt`` with the library (no ansible), as the modules would; returns QEMU's pid."""
    async def go(session: Session) -> int:
        try:
            return await start(session, rt, process.resolve_user(user), "qemu-system-x86_64")  # type: ignore[arg-type]
        finally:
            await session.hang_up()

    with RunDir.open(runtime_dir) as rd:  # type: ignore[union-attr]
        return asyncio.run(go(_session(rd, runtime_dir, name)))


def kill_instance(runtime_dir: str, name: str) -> None:
    """SIGKILL the instance's QEMU (if it is still the process that was started); its runtime file stays."""
    rd = RunDir.open(runtime_dir, create=False)
    if rd is None:
        return
    with rd:
        session = _session(rd, runtime_dir, name)
        session.kill()
        remove_plumbing(session)


def running_pid(runtime_dir: str, name: str) -> int | None:
    rd = RunDir.open(runtime_dir, create=False)
    if rd is None:
        return None
    with rd:
        return _session(rd, runtime_dir, name).pid()


def tcp_uri() -> str:
    """A migration URI on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp:127.0.0.1:{sock.getsockname()[1]}"


class Started:
    """A paused instance started through the library; ``cleanup`` kills it and removes its files."""

    def __init__(self, runtime_dir: str, name: str) -> None:
        self.runtime_dir, self.name = runtime_dir, name
        self.where: Paths = paths(runtime_dir, name)
        self.qmp = self.where.qmp

    def cleanup(self) -> None:
        kill_instance(self.runtime_dir, self.name)


def start_paused(runtime_dir: str, name: str, hv: dict, disks: list[dict], nics: list[dict]) -> tuple[dict, Started]:
    """Start a new instance built by the library, paused (``-S``), under TCG; returns its runtime and its handle."""
    hvp = hvparams.normalize({"accel": "tcg", "kvm_extra": "-S", **hv})
    inst = devices.derived_uuid("instance", name)
    disk_recs = [devices.disk_record(d, inst) for d in disks]
    nic_recs = [devices.nic_record(n, inst, i) for i, n in enumerate(nics)]
    rt = construct.new_runtime(name, inst, 128, 1, hvp, "qemu-system-x86_64", disk_recs, nic_recs)
    start_runtime(runtime_dir, name, dict(rt))
    return dict(rt), Started(runtime_dir, name)
