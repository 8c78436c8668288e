"""The fake QEMU the unit tests share: a QMP peer behind the real qemu.qmp client.

``FakeQemu`` answers QMP the way QEMU does for the commands the collection
sends (device and block-node bookkeeping, PCI/SCSI address clashes, fdsets,
trays, qom paths, migration), refuses or hangs on request, emits events and
can drop the connection. It holds no guest: unplug behaviour is chosen per
device (acknowledged, silent, refused by the guest, acknowledged only on the
second request). Tests assert on what it holds at the end (``devices``,
``nodes``, ``netdevs``, ``fdsets``); ``log`` keeps what was sent, for the
few places where the order of the commands is the contract. The real QEMU
side is in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from typing import Any, Callable, Iterable

from qemu.qmp import ExecInterruptedError, ExecuteError, Message, Runstate
from qemu.qmp.events import EventListener
from qemu.qmp.models import ErrorResponse

from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp

PCI_BRIDGES = ("pci-bridge", "pcie-root-port")
SCSI_CONTROLLERS = ("lsi53c895a", "megasas", "virtio-scsi-pci")
CDS = ("scsi-cd", "ide-cd")


def is_query(command: str) -> bool:
    """A command that only reads QEMU's state."""
    return command.startswith("query-") or command in ("qom-get", "qom-list")


def named(command: str, args: dict[str, Any] | None) -> str:
    """``command`` with what it acts on (device or netdev id, node name, fd name, fdset opaque or number), e.g. ``device_add disk-1``."""
    args = args or {}
    name = next((args[key] for key in ("id", "node-name", "device", "fdname", "opaque", "fdset-id") if args.get(key) is not None), "")
    return f"{command} {name}".strip()


def in_order(sent: Iterable[Any], *steps: Any) -> bool:
    """True if each step was sent after the one before it; other commands may come in between.

    For the places where the order is QEMU's contract (a backend before its
    device, device_del before the backend goes, capabilities before the
    migration), never for the order of independent commands."""
    rest = iter(sent)
    return all(any(item == step for item in rest) for step in steps)


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
        self.capabilities: dict[str, bool] = {}
        self.parameters: dict[str, Any] = {}
        self.migrated_with: dict[str, Any] | None = None  # uri, capabilities and parameters in effect when migrate ran
        self.incoming: dict[str, Any] | None = None  # the same for migrate-incoming
        self.has_quit = False
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

    def changes(self) -> list[str]:
        """The commands that change QEMU, in the order sent, each with what it acts on (``named``); queries left out."""
        return [named(command, args) for command, args in self.log if not is_query(command)]

    def sent(self, command: str) -> list[dict[str, Any] | None]:
        """The arguments of each ``command`` sent, in order."""
        return [args for sent, args in self.log if sent == command]

    def state(self) -> dict[str, Any]:
        """A copy of what QEMU holds, to compare before and after: devices, block nodes, netdevs, fdsets (by opaque), named fds, migration."""
        return copy.deepcopy({"devices": self.devices, "nodes": self.nodes, "netdevs": self.netdevs,
                              "fdsets": {fdset: [fd["opaque"] for fd in fds] for fdset, fds in self.fdsets.items()},
                              "fdnames": sorted(self.fdnames), "capabilities": self.capabilities, "parameters": self.parameters,
                              "migrated_with": self.migrated_with, "incoming": self.incoming, "has_quit": self.has_quit})

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

    def do_migrate_set_capabilities(self, args: dict[str, Any]) -> Any:
        self.capabilities.update({cap["capability"]: cap["state"] for cap in args["capabilities"]})
        return {}

    def do_migrate_set_parameters(self, args: dict[str, Any]) -> Any:
        self.parameters.update(args)
        return {}

    def _in_effect(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"uri": args.get("uri"), "capabilities": dict(self.capabilities), "parameters": dict(self.parameters)}

    def do_migrate_incoming(self, args: dict[str, Any]) -> Any:
        self.status = "inmigrate"
        self.incoming = self._in_effect(args)
        return {}

    async def do_migrate(self, args: dict[str, Any]) -> Any:
        self.migrated = True
        self.migrated_with = self._in_effect(args)
        for status in self.migration:
            await self.emit("MIGRATION", {"status": status})
        return {}

    def do_migrate_cancel(self, _args: dict[str, Any]) -> Any:
        self.migrate_info = {**self.migrate_info, "status": "cancelled"}
        return {}

    def do_query_migrate(self, _args: dict[str, Any]) -> Any:
        return dict(self.migrate_info) if getattr(self, "migrated", False) else {}  # QEMU: {} before any migration

    def do_quit(self, _args: dict[str, Any]) -> Any:
        self.has_quit = True
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
