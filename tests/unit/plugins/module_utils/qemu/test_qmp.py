"""The Monitor over a fake QMP client, and the fake QEMU the ops tests share.

``FakeQemu`` answers QMP the way QEMU does for the commands the collection
sends (device and block-node bookkeeping, PCI/SCSI address clashes, fdsets,
trays, qom paths, migration), refuses or hangs on request, emits events and
can drop the connection. It holds no guest: unplug behaviour is chosen per
device (acknowledged, silent, refused by the guest, acknowledged only on the
second request). The real QEMU side is in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, Callable

import pytest
from qemu.qmp import ExecInterruptedError, ExecuteError, Message, Runstate
from qemu.qmp.events import EventListener
from qemu.qmp.models import ErrorResponse

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp

PCI_BRIDGES = ("pci-bridge", "pcie-root-port")
SCSI_CONTROLLERS = ("lsi53c895a", "megasas", "virtio-scsi-pci")
CDS = ("scsi-cd", "ide-cd")


def refusal(command: str, args: dict[str, Any] | None, desc: str, error_class: str = "GenericError") -> ExecuteError:
    """The exception qemu.qmp raises when QEMU answers ``command`` with an error."""
    sent = Message({"execute": command, "arguments": args or {}})
    reply = Message({"error": {"class": error_class, "desc": desc}})
    return ExecuteError(ErrorResponse(reply), sent, reply)


def devfn(addr: str) -> int:
    slot, _dot, function = addr.partition(".")
    return int(slot, 16) << 3 | int(function.removeprefix("0x") or 0)


class FakeQemu:
    """A QMP client whose server is a small model of QEMU's device tree."""

    def __init__(self, machine: str = "pc") -> None:
        self.runstate = Runstate.RUNNING
        self._changed = asyncio.Event()
        self.root = "pcie.0" if machine == "q35" else "pci.0"
        self.root_path = "/machine/q35/pcie.0" if machine == "q35" else "/machine/i440fx/pci.0"
        self.builtin_slots = {0: "", 1: ""}  # host bridge and chipset functions on the root bus: no qdev id
        self.devices: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.netdevs: dict[str, dict[str, Any]] = {}
        self.fdsets: dict[int, list[dict[str, Any]]] = {}
        self.fdnames: dict[str, int] = {}
        self.pending_fds: list[int] = []
        self.next_fdset = 2
        self.log: list[tuple[str, dict[str, Any] | None]] = []
        self.refuse: dict[str, tuple[str, str]] = {}  # command -> (error class, desc)
        self.refuse_if: Callable[[str, dict[str, Any]], tuple[str, str] | None] | None = None
        self.hang: set[str] = set()  # commands QEMU never answers
        self.drop_on: set[str] = set()  # commands during which the connection drops
        self.unplug = "ack"  # default for every device: ack | silent | guest-error | second | refuse-repeat
        self.unplug_of: dict[str, str] = {}
        self.unplug_requests: dict[str, int] = {}
        self.misplace: dict[str, dict[str, Any]] = {}  # device id -> where QEMU "really" put it (bus, addr, scsi-id)
        self.listeners: list[EventListener] = []
        self.status = "running"
        self.migration: list[str] = ["setup", "active", "completed"]  # MIGRATION events a migrate emits
        self.migrate_info: dict[str, Any] = {"status": "completed", "total-time": 1200, "downtime": 35, "setup-time": 4,
                                             "ram": {"transferred": 1 << 20, "dirty-sync-count": 3}}
        self.before_command: Callable[[str, dict[str, Any] | None], None] | None = None

    # -- the client interface Monitor uses ------------------------------------------

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        self.log.append((command, args))
        if self.before_command:
            self.before_command(command, args)
        if self.runstate != Runstate.RUNNING:
            raise ExecInterruptedError("Disconnected")
        if command in self.hang:
            await asyncio.Event().wait()
        if command in self.drop_on:
            self.hang_up()
            raise ExecInterruptedError("Disconnected")
        refused = self.refuse.get(command) or (self.refuse_if(command, args or {}) if self.refuse_if else None)
        if refused:
            raise refusal(command, args, refused[1], refused[0])
        handler = getattr(self, "do_" + command.replace("-", "_"), None)
        if handler is None:
            raise refusal(command, args, f"The command {command} has not been found", "CommandNotFound")
        result = handler(dict(args or {}))
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, ExecuteError):
            raise result
        return result

    @contextlib.contextmanager
    def listener(self, names: tuple[str, ...]) -> Any:
        listener = EventListener(names)
        self.listeners.append(listener)
        try:
            yield listener
        finally:
            self.listeners.remove(listener)

    async def runstate_changed(self) -> Runstate:
        await self._changed.wait()
        return self.runstate

    def send_fd_scm(self, fd: int) -> None:
        self.pending_fds.append(os.dup(fd))  # QEMU's own copy: the sender closes its descriptor right after

    # -- test controls -----------------------------------------------------------------

    def hang_up(self) -> None:
        self.runstate = Runstate.DISCONNECTING
        self._changed.set()

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            await listener.put(Message({"event": event, "data": data, "timestamp": {"seconds": 0, "microseconds": 0}}))

    def close(self) -> None:
        """Drop every descriptor QEMU holds (test teardown)."""
        for fds in self.fdsets.values():
            for fd in fds:
                os.close(fd["fd"])
        for fd in [*self.fdnames.values(), *self.pending_fds]:
            os.close(fd)
        self.fdsets, self.fdnames, self.pending_fds = {}, {}, []

    def commands(self) -> list[str]:
        return [command for command, _args in self.log]

    def placed(self, dev_id: str) -> tuple[str, Any]:
        dev = self.devices[dev_id]
        return dev["bus"], dev.get("addr", dev.get("scsi-id"))

    # -- descriptors ---------------------------------------------------------------------

    def do_add_fd(self, args: dict[str, Any]) -> Any:
        if not self.pending_fds:
            return refusal("add-fd", args, "No file descriptor supplied via SCM_RIGHTS")
        fdset = args.get("fdset-id", self.next_fdset)
        self.next_fdset = max(self.next_fdset, fdset + 1)
        fd = self.pending_fds.pop(0)
        self.fdsets.setdefault(fdset, []).append({"fd": fd, "opaque": args.get("opaque")})
        return {"fdset-id": fdset, "fd": fd}

    def do_remove_fd(self, args: dict[str, Any]) -> Any:
        fds = self.fdsets.pop(args["fdset-id"], None)
        if fds is None:
            return refusal("remove-fd", args, f"File descriptor named 'fdset-id:{args['fdset-id']}' not found")
        for fd in fds:
            os.close(fd["fd"])
        return {}

    def do_query_fdsets(self, _args: dict[str, Any]) -> Any:
        return [{"fdset-id": s, "fds": [{k: v for k, v in fd.items() if v is not None} for fd in fds]} for s, fds in sorted(self.fdsets.items())]

    def do_getfd(self, args: dict[str, Any]) -> Any:
        if not self.pending_fds:
            return refusal("getfd", args, "No file descriptor supplied via SCM_RIGHTS")
        self.fdnames[args["fdname"]] = self.pending_fds.pop(0)
        return {}

    def do_closefd(self, args: dict[str, Any]) -> Any:
        fd = self.fdnames.pop(args["fdname"], None)
        if fd is None:
            return refusal("closefd", args, f"File descriptor named '{args['fdname']}' not found")
        os.close(fd)
        return {}

    # -- backends ------------------------------------------------------------------------

    def _fdset_of(self, filename: str) -> int | None:
        return int(filename.rsplit("/", 1)[1]) if filename.startswith("/dev/fdset/") else None

    def do_blockdev_add(self, args: dict[str, Any]) -> Any:
        node = args["node-name"]
        if node in self.nodes:
            return refusal("blockdev-add", args, f"Duplicate nodes with node-name='{node}'")
        filename = (args.get("file") or {}).get("filename")
        if filename is not None and self._fdset_of(filename) not in self.fdsets:
            return refusal("blockdev-add", args, f"Could not open '{filename}': No such file or directory")
        self.nodes[node] = {"args": args, "file": filename or f"{args['driver']}://{node}", "attached": None}
        return {}

    def do_blockdev_del(self, args: dict[str, Any]) -> Any:
        node = self.nodes.get(args["node-name"])
        if node is None:
            return refusal("blockdev-del", args, f"Failed to find node with node-name='{args['node-name']}'")
        if node["attached"]:
            return refusal("blockdev-del", args, f"Node '{args['node-name']}' is busy: node is used as backing hd of '{node['attached']}'")
        del self.nodes[args["node-name"]]
        return {}

    def do_netdev_add(self, args: dict[str, Any]) -> Any:
        if args["id"] in self.netdevs:
            return refusal("netdev_add", args, f"Duplicate ID '{args['id']}' for netdev")
        if args["type"] == "tap":
            fd = self.fdnames.pop(args["fd"], None)
            if fd is None:
                return refusal("netdev_add", args, f"File descriptor named '{args['fd']}' has not been found")
            args["held"] = fd
        self.netdevs[args["id"]] = args
        return {}

    def do_netdev_del(self, args: dict[str, Any]) -> Any:
        netdev = self.netdevs.pop(args["id"], None)
        if netdev is None:
            return refusal("netdev_del", args, f"Device '{args['id']}' not found", "DeviceNotFound")
        if "held" in netdev:
            os.close(netdev["held"])
        return {}

    # -- devices -------------------------------------------------------------------------

    def buses(self) -> set[str]:
        found = {self.root, "ide.0", "ide.1"}
        for dev_id, dev in self.devices.items():
            if dev["driver"] in PCI_BRIDGES:
                found.add(dev_id)
            elif dev["driver"] in SCSI_CONTROLLERS:
                found.add(f"{dev_id}.0")
        return found

    def _clash(self, dev_id: str, args: dict[str, Any]) -> str | None:
        bus = args.get("bus", self.root)
        for other_id, other in self.devices.items():
            if other["bus"] != bus:
                continue
            if "addr" in args and other.get("addr") is not None:
                mine, theirs = devfn(args["addr"]), other["addr"]
                same_slot = mine >> 3 == theirs >> 3
                if mine == theirs or (same_slot and not (args.get("multifunction") or other.get("multifunction"))):
                    return (f"PCI: slot {mine >> 3} function {mine & 7} not available for {args['driver']}, "
                            f"in use by {other['driver']},id={other_id}")
            if "scsi-id" in args and other.get("scsi-id") == args["scsi-id"]:
                return f"SCSI target {args['scsi-id']} already in use by {other_id}"
            if "unit" in args and other.get("unit") == args["unit"]:
                return f"unit {args['unit']} is in use"
        if bus == self.root and "addr" in args and devfn(args["addr"]) >> 3 in self.builtin_slots:
            return f"PCI: slot {devfn(args['addr']) >> 3} function 0 not available for {args['driver']}, in use by a built-in device"
        return None

    def do_device_add(self, args: dict[str, Any]) -> Any:
        dev_id = args["id"]
        if dev_id in self.devices:
            return refusal("device_add", args, f"Duplicate device ID '{dev_id}'")
        bus = args.get("bus", self.root)
        if bus not in self.buses():
            return refusal("device_add", args, f"Bus '{bus}' not found")
        clash = self._clash(dev_id, args)
        if clash:
            return refusal("device_add", args, clash)
        if "drive" in args:
            node = self.nodes.get(args["drive"])
            if node is None:
                return refusal("device_add", args, f"Property '{args['driver']}.drive' can't find value '{args['drive']}'")
            if node["attached"]:
                return refusal("device_add", args, f"Drive '{args['drive']}' is already in use by {node['attached']}")
            node["attached"] = dev_id
        if "netdev" in args and args["netdev"] not in self.netdevs:
            return refusal("device_add", args, f"Property '{args['driver']}.netdev' can't find value '{args['netdev']}'")
        dev = {"driver": args["driver"], "bus": bus, "drive": args.get("drive"), "multifunction": args.get("multifunction", False)}
        if "addr" in args:
            dev["addr"] = devfn(args["addr"])
        for key in ("scsi-id", "unit"):
            if key in args:
                dev[key] = args[key]
        dev.update(self.misplace.get(dev_id, {}))
        self.devices[dev_id] = dev
        return {}

    def _remove_device(self, dev_id: str) -> None:
        dev = self.devices.pop(dev_id)
        if dev.get("drive") and dev["drive"] in self.nodes:
            self.nodes[dev["drive"]]["attached"] = None

    async def do_device_del(self, args: dict[str, Any]) -> Any:
        dev_id = args["id"]
        if dev_id not in self.devices:
            return refusal("device_del", args, f"Device '{dev_id}' not found", "DeviceNotFound")
        count = self.unplug_requests[dev_id] = self.unplug_requests.get(dev_id, 0) + 1
        mode = self.unplug_of.get(dev_id, self.unplug)
        if mode == "refuse-repeat" and count > 1:
            return refusal("device_del", args, f"Device {dev_id} is already in the process of unplug")
        if mode == "guest-error":
            await self.emit("DEVICE_UNPLUG_GUEST_ERROR", {"device": dev_id, "path": f"/machine/peripheral/{dev_id}"})
        elif mode == "ack" or (mode == "second" and count >= 2):
            self._remove_device(dev_id)
            await self.emit("DEVICE_DELETED", {"path": f"/machine/peripheral/{dev_id}/virtio-backend"})
            await self.emit("DEVICE_DELETED", {"device": dev_id, "path": f"/machine/peripheral/{dev_id}"})
        return {}

    # -- queries -------------------------------------------------------------------------

    def do_qom_list(self, args: dict[str, Any]) -> Any:
        assert args["path"] == "/machine/peripheral", args
        return [{"name": "type", "type": "string"}, *({"name": i, "type": f"child<{d['driver']}>"} for i, d in self.devices.items())]

    def do_qom_get(self, args: dict[str, Any]) -> Any:
        dev_id = args["path"].removeprefix("/machine/peripheral/")
        dev = self.devices.get(dev_id)
        if dev is None or "/" in dev_id:
            return refusal("qom-get", args, f"Device '{args['path']}' not found", "DeviceNotFound")
        prop = args["property"]
        if prop == "parent_bus":
            bus = dev["bus"]
            if bus == self.root:
                return self.root_path
            if bus.startswith("ide."):
                return f"/machine/unattached/device[3]/{bus}"
            owner = bus[:-2] if bus.endswith(".0") and not bus.startswith("pci") else bus
            return f"/machine/peripheral/{owner}/{bus}"
        if prop == "type":
            return dev["driver"]
        if prop == "drive" and "drive" in dev:  # the node behind the device, "" for an empty drive (as QEMU answers)
            return dev["drive"] or ""
        if prop in dev and dev[prop] is not None and prop in ("addr", "scsi-id", "unit"):
            return dev[prop]
        return refusal("qom-get", args, f"Property '{dev['driver']}.{prop}' not found")

    def do_query_block(self, _args: dict[str, Any]) -> Any:
        found = []
        for dev_id, dev in self.devices.items():
            if dev["driver"] not in ("virtio-blk-pci", "scsi-hd", "scsi-cd", "scsi-block", "scsi-generic", "ide-hd", "ide-cd"):
                continue
            entry: dict[str, Any] = {"device": "", "qdev": f"/machine/peripheral/{dev_id}/virtio-backend"
                                     if dev["driver"] == "virtio-blk-pci" else f"/machine/peripheral/{dev_id}", "locked": False}
            if dev["driver"] in CDS:
                entry["tray_open"] = dev.get("tray_open", False)
            if dev.get("drive"):
                node = self.nodes[dev["drive"]]
                entry["inserted"] = {"file": node["file"], "node-name": dev["drive"], "ro": node["args"].get("read-only", False)}
            found.append(entry)
        return found

    def do_query_pci(self, _args: dict[str, Any]) -> Any:
        on_root = [{"bus": 0, "slot": slot, "function": 0, "qdev_id": qdev} for slot, qdev in self.builtin_slots.items()]
        on_root += [{"bus": 0, "slot": d["addr"] >> 3, "function": d["addr"] & 7, "qdev_id": i}
                    for i, d in self.devices.items() if d["bus"] == self.root and d.get("addr") is not None]
        return [{"bus": 0, "devices": sorted(on_root, key=lambda d: (d["slot"], d["function"]))}]

    # -- CD trays --------------------------------------------------------------------------

    def _cd(self, command: str, args: dict[str, Any]) -> Any:
        dev = self.devices.get(args["id"])
        if dev is None or dev["driver"] not in CDS:
            return refusal(command, args, f"Device '{args['id']}' not found", "DeviceNotFound")
        return dev

    def do_blockdev_open_tray(self, args: dict[str, Any]) -> Any:
        dev = self._cd("blockdev-open-tray", args)
        if isinstance(dev, ExecuteError):
            return dev
        dev["tray_open"] = True
        return {}

    def do_blockdev_remove_medium(self, args: dict[str, Any]) -> Any:
        dev = self._cd("blockdev-remove-medium", args)
        if isinstance(dev, ExecuteError):
            return dev
        if not dev.get("tray_open"):
            return refusal("blockdev-remove-medium", args, f"Tray of device '{args['id']}' is not open")
        if dev.get("drive"):
            self.nodes[dev["drive"]]["attached"] = None
            dev["drive"] = None
        return {}

    def do_blockdev_insert_medium(self, args: dict[str, Any]) -> Any:
        dev = self._cd("blockdev-insert-medium", args)
        if isinstance(dev, ExecuteError):
            return dev
        if not dev.get("tray_open") or dev.get("drive"):
            return refusal("blockdev-insert-medium", args, f"Tray of device '{args['id']}' is not open or holds a medium")
        node = self.nodes.get(args["node-name"])
        if node is None or node["attached"]:
            return refusal("blockdev-insert-medium", args, f"Node '{args['node-name']}' not found or in use")
        node["attached"] = args["id"]
        dev["drive"] = args["node-name"]
        return {}

    def do_blockdev_close_tray(self, args: dict[str, Any]) -> Any:
        dev = self._cd("blockdev-close-tray", args)
        if isinstance(dev, ExecuteError):
            return dev
        dev["tray_open"] = False
        return {}

    # -- run state and migration -------------------------------------------------------------

    def do_query_status(self, _args: dict[str, Any]) -> Any:
        return {"status": self.status, "running": self.status == "running"}

    def do_migrate_set_capabilities(self, _args: dict[str, Any]) -> Any:
        return {}

    def do_migrate_set_parameters(self, _args: dict[str, Any]) -> Any:
        return {}

    def do_migrate_incoming(self, _args: dict[str, Any]) -> Any:
        self.status = "inmigrate"
        return {}

    async def do_migrate(self, _args: dict[str, Any]) -> Any:
        self.migrated = True
        for status in self.migration:
            await self.emit("MIGRATION", {"status": status})
        return {}

    def do_migrate_cancel(self, _args: dict[str, Any]) -> Any:
        self.migrate_info = {**self.migrate_info, "status": "cancelled"}
        return {}

    def do_query_migrate(self, _args: dict[str, Any]) -> Any:
        return dict(self.migrate_info) if getattr(self, "migrated", False) else {}  # QEMU: {} before any migration

    def do_quit(self, _args: dict[str, Any]) -> Any:
        self.hang_up()
        return {}

    def do_system_powerdown(self, _args: dict[str, Any]) -> Any:
        return {}


def connect_to(fake: FakeQemu, seen: list[str] | None = None) -> Callable[..., Any]:
    """A stand-in for qmp.open_monitor that opens a Monitor on ``fake`` (whatever the socket)."""

    async def open_monitor(socket_path: str, timeout: float = qmp.CONNECT_TIMEOUT) -> qmp.Monitor:
        if seen is not None:
            seen.append(socket_path)
        return qmp.Monitor(fake, socket_path)

    return open_monitor


@pytest.fixture
def fake() -> Any:
    qemu = FakeQemu()
    yield qemu
    qemu.close()


class FakeClient:
    def __init__(self) -> None:
        self.runstate = Runstate.RUNNING
        self._changed = asyncio.Event()

    async def runstate_changed(self) -> Runstate:
        await self._changed.wait()
        return self.runstate

    def hang_up(self) -> None:
        self.runstate = Runstate.DISCONNECTING
        self._changed.set()


class FakeListener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()


def deleted(dev: str) -> dict[str, Any]:
    return {"event": "DEVICE_DELETED", "data": {"device": dev}}


def wait(mon: qmp.Monitor, listener: FakeListener, timeout: float = 5) -> Any:
    return mon.wait_for(listener, lambda ev: ev["data"]["device"] == "disk-1", timeout, "DEVICE_DELETED for disk-1")


def test_returns_the_first_matching_event() -> None:
    async def go() -> dict[str, Any]:
        mon, listener = qmp.Monitor(FakeClient()), FakeListener()
        listener.queue.put_nowait(deleted("disk-0"))
        listener.queue.put_nowait(deleted("disk-1"))
        return await wait(mon, listener)

    assert asyncio.run(go()) == deleted("disk-1")


def test_deadline_names_the_event() -> None:
    async def go() -> None:
        await wait(qmp.Monitor(FakeClient()), FakeListener(), timeout=0.05)

    with pytest.raises(KvmError, match=r"^no DEVICE_DELETED for disk-1 within 0.05s$"):
        asyncio.run(go())


def test_hang_up_ends_the_wait_at_once() -> None:
    async def go() -> float:
        client = FakeClient()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, client.hang_up)
        started = loop.time()
        with pytest.raises(qmp.QmpClosed, match="QEMU closed its QMP connection"):
            await wait(qmp.Monitor(client), FakeListener(), timeout=30)
        return loop.time() - started

    assert asyncio.run(go()) < 5


def test_an_event_that_came_with_the_hang_up_still_counts() -> None:
    async def go() -> dict[str, Any]:
        client, listener = FakeClient(), FakeListener()
        listener.queue.put_nowait(deleted("disk-1"))
        client.hang_up()
        return await wait(qmp.Monitor(client), listener)

    assert asyncio.run(go()) == deleted("disk-1")


class RefusingClient:
    """Answers ``query-*`` at once, refuses ``device_add``, never answers ``blockdev-add``."""

    async def execute(self, command: str, args: dict[str, Any] | None = None) -> Any:
        if command.startswith("query-"):
            return [{"command": command}]
        if command == "device_add":
            sent = Message({"execute": command, "arguments": args or {}})
            reply = Message({"error": {"class": "GenericError", "desc": "Duplicate device ID 'd1'"}})
            raise ExecuteError(ErrorResponse(reply), sent, reply)
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")


def test_each_command_gets_its_own_answer_in_order() -> None:
    async def go() -> list[Any]:
        mon = qmp.Monitor(RefusingClient())
        return await mon.batch([("blockdev-add", {"node-name": "d1"}), ("device_add", {"id": "d1"}), ("query-block", None)],
                               timeout=0.1)

    hung, refused, answered = asyncio.run(go())
    assert isinstance(hung, KvmError) and str(hung) == "blockdev-add: QEMU did not answer blockdev-add within 0.1s"
    assert isinstance(refused, KvmError) and refused.step == "device_add" and "Duplicate device ID 'd1'" in refused.msg
    assert answered == [{"command": "query-block"}]


# -- the Monitor's faces over the fake QEMU --------------------------------------------------


def test_refusals_keep_qemus_class_and_name_the_step(fake):
    async def go() -> list[KvmError]:
        mon = qmp.Monitor(fake)
        found = []
        for step in (None, "rollback"):
            try:
                await mon.cmd("device_del", {"id": "ghost"}, step=step)
            except KvmError as err:
                found.append(err)
        return found

    plain, named = asyncio.run(go())
    assert str(plain) == "device_del: QEMU refused device_del: Device 'ghost' not found"
    assert (plain.error_class, named.step, named.error_class) == ("DeviceNotFound", "rollback", "DeviceNotFound")


def test_a_silent_qemu_is_a_timeout_and_a_dropped_connection_is_qmp_closed(fake):
    fake.hang.add("query-block")
    fake.drop_on.add("quit")

    async def go() -> tuple[Any, Any, Any]:
        mon = qmp.Monitor(fake)
        with pytest.raises(KvmTimeout) as late:
            await mon.cmd("query-block", timeout=0.05, step="verify")
        with pytest.raises(QmpClosed) as gone:
            await mon.cmd("quit")
        after = await mon.batch([("query-status", None)])
        return late.value, gone.value, after

    late, gone, after = asyncio.run(go())
    assert str(late) == "verify: QEMU did not answer query-block within 0.05s"
    assert str(gone) == "quit: lost the QMP connection during quit: Disconnected"
    assert isinstance(after[0], QmpClosed)


def test_try_cmd_swallows_refusals_and_silence(fake, monkeypatch):
    fake.hang.add("query-status")
    monkeypatch.setattr(qmp, "COMMAND_TIMEOUT", 0.05)

    async def go() -> list[Any]:
        mon = qmp.Monitor(fake)
        return [await mon.try_cmd("remove-fd", {"fdset-id": 9}), await mon.try_cmd("query-status"), await mon.try_cmd("query-fdsets")]

    assert asyncio.run(go()) == [None, None, []]


def test_events_are_heard_only_inside_the_block(fake):
    async def go() -> tuple[Any, int]:
        mon = qmp.Monitor(fake)
        with mon.events(["DEVICE_DELETED"]) as listener:
            await fake.emit("MIGRATION", {"status": "active"})  # not listened for
            await fake.emit("DEVICE_DELETED", {"device": "d1"})
            event = await mon.wait_for(listener, lambda ev: True, 1, "DEVICE_DELETED")
        await fake.emit("DEVICE_DELETED", {"device": "d2"})
        return event, len(fake.listeners)

    event, listening = asyncio.run(go())
    assert (event["event"], event["data"]) == ("DEVICE_DELETED", {"device": "d1"}) and listening == 0


def test_send_fd_hands_qemu_its_own_copy(fake, tmp_path):
    image = tmp_path / "a.img"
    image.write_bytes(b"x")

    async def go() -> Any:
        mon = qmp.Monitor(fake)
        fd = os.open(image, os.O_RDONLY)
        try:
            mon.send_fd(fd)
        finally:
            os.close(fd)
        return await mon.cmd("add-fd", {"opaque": "disk-1"})

    answer = asyncio.run(go())
    held = fake.fdsets[answer["fdset-id"]][0]["fd"]
    assert os.path.samestat(os.fstat(held), os.stat(image)) and answer["fdset-id"] == 2


def test_an_empty_batch_has_no_answers(fake):
    assert asyncio.run(qmp.Monitor(fake).batch([])) == []
