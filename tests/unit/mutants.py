"""Hand-written mutants of the allocator, the upgrader, hvinfo validation, convergence and the fixed xfail bugs; the unit suite must kill each.

    python tests/unit/mutants.py            # every mutant
    python tests/unit/mutants.py A1 U3      # some

The working tree is never written to. The files git knows (tracked, or new
and not ignored) are copied once to a temporary directory laid out as
ansible_collections/kvmhv/qemu; each mutant replaces one exact snippet (found
exactly once) in a file of that copy's plugins/module_utils, the whole unit
suite runs there (PYTHONPATH is the copy's collections root alone, hypothesis
derandomized, no example database, no bytecode written), and the copy's file
is put back. The copy is removed at the end (also on Ctrl-C or SIGTERM); a
run killed with SIGKILL leaves at most that temporary directory behind.

A mutant survives when the suite passes; a mutant whose file or snippet is
not found (the code moved) is an error line in the table, and the run goes
on with the others. The table printed is the one in tests/README.md; the
script fails if a mutant survives or is in error, or if the unmutated copy
does not pass to begin with.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
MODULE_UTILS = Path("plugins") / "module_utils"
TIMEOUT = 600  # seconds for one run of the suite; a mutant that makes it hang counts as killed


class Mutant(NamedTuple):
    key: str
    file: str
    old: str
    new: str
    what: str


MUTANTS = [
    # -- model/allocator.py ------------------------------------------------------------------------------------------
    Mutant("A1", "model/allocator.py", 'return range(self.hvparams["kvm_pci_reservations"], last + 1)',
           'return range(self.hvparams["kvm_pci_reservations"], last)', "window off by one: the last slot is never used"),
    Mutant("A2", "model/allocator.py", 'for target in range(scsi_limit(ctl["driver"]) + 1):',
           'for target in range(scsi_limit(ctl["driver"])):', "a controller's highest SCSI target is never used"),
    Mutant("A3", "model/allocator.py", "                if target not in self.used.get(bus, set()):",
           "                if target > max(self.used.get(bus, set()), default=-1):", "SCSI holes skipped: a new disk goes after the highest target"),
    Mutant("A4", "model/allocator.py", "    bus, slot = free[0]\n",
           "    order = list(state.pci_leaves()); last = max([i for i, leaf in enumerate(order) if state.slot_used(*leaf)], default=-1); "
           "bus, slot = next((leaf for leaf in order[last + 1:] if not state.slot_used(*leaf)), free[0])\n",
           "PCI holes skipped: a new device goes after the last used leaf"),
    Mutant("A5", "model/allocator.py", '"addr": hex(free[-1]),', '"addr": hex(free[0]),', "bridges take the bottom of the window"),
    Mutant("A6", "model/allocator.py", '                    info["multifunction"] = True', "                    pass",
           "function 0 of a root-port slot without multifunction"),
    Mutant("A7", "model/allocator.py", "                used.add((addr[0], None))  # the slot as a whole", "                pass",
           "a taken slot is not marked as a whole"),
    Mutant("A8", "model/allocator.py",
           "    for _controller in range(new_controllers):\n        place_scsi_controller(state)\n    for disk in new_disks:\n"
           '        if disk["type"] not in hvp.SCSI_DISK_TYPES:\n            disk["hvinfo"] = place_disk(state, disk)[0]\n',
           '    for disk in new_disks:\n        if disk["type"] not in hvp.SCSI_DISK_TYPES:\n            disk["hvinfo"] = place_disk(state, disk)[0]\n'
           "    for _controller in range(new_controllers):\n        place_scsi_controller(state)\n",
           "SCSI controllers placed after the PCI disks at start"),
    Mutant("A9", "model/allocator.py", 'provide_leaves(state, required + hvparams["pci_hotplug_slots"], required)',
           "provide_leaves(state, required, required)", "the hotplug room (pci_hotplug_slots) is forgotten"),
    Mutant("A10", "model/allocator.py", "        for ctl in self.scsi_controllers():\n            bus = scsi_bus_of",
           "        for ctl in reversed(self.scsi_controllers()):\n            bus = scsi_bus_of", "SCSI controllers filled last one first"),
    Mutant("A11", "model/allocator.py", "if isinstance(addr, tuple) and addr[1] == 0 and (addr[0], None) in used:", "if False:",
           "function 0 may join a slot whose other functions are taken"),
    Mutant("A12", "model/allocator.py", 'return hvp.SCSI_CONTROLLER_ID if index == 0 else f"{hvp.SCSI_CONTROLLER_ID}{index}"',
           'return f"{hvp.SCSI_CONTROLLER_ID}{index}"', "the first SCSI controller is scsi0, not scsi"),
    Mutant("A13", "model/allocator.py", "PORTS_PER_SLOT = 8", "PORTS_PER_SLOT = 7", "seven root ports per q35 slot"),
    Mutant("A14", "model/allocator.py",
           'if have < required or (have < needed and not state.ids - {c["hvinfo"]["id"] for c in state.controllers}):',
           "if have < required:", "a new instance starts without its promised hotplug room"),
    # -- store/upgrade.py --------------------------------------------------------------------------------------------
    Mutant("U1", "store/upgrade.py",
           '                controllers.append({"kind": "scsi", "hvinfo": {"driver": head[0], "id": hvp.SCSI_CONTROLLER_ID, "bus": hvp.PCI_BUS}})',
           "                pass", "the v1->v2 step drops the SCSI controller (and its -device)"),
    Mutant("U2", "store/upgrade.py", 'if data.pop("stopped", False):', 'if data.get("stopped", False):',
           "the v1->v2 step keeps stopped: true beside the mark"),
    Mutant("U3", "store/upgrade.py", '            if dev["hvinfo"]["bus"] not in buses:', "            if False:",
           "devices on a bus no controller provides are accepted"),
    Mutant("U4", "store/upgrade.py", 'ctl.get("kind") not in CONTROLLER_KINDS or set(ctl) != {"kind", "hvinfo"}:',
           'ctl.get("kind") not in CONTROLLER_KINDS:', "a controller record may carry extra keys"),
    Mutant("U5", "store/upgrade.py", "if version > FORMAT_VERSION:", "if version > FORMAT_VERSION + 1:",
           "the next format version is called unknown, not newer"),
    Mutant("U6", "store/ganeti/kvm_cmd.py", "            plumbing.append(group)\n",
           "            plumbing.append(group[:1])\n            out.append(group[1:])\n",
           "a legacy (Ganeti) plumbing option's argument stays on the command line"),
    Mutant("U7", "store/upgrade.py", 'data["hvparams"].pop("pci_hotplug_slots", None)', 'data["hvparams"].get("pci_hotplug_slots", None)',
           "the export to version 1 keeps an hvparam version 1 refuses"),
    Mutant("U8", "store/upgrade.py", 'disk.setdefault("type", hvp.DRIVER_DISK_TYPES.get(disk["hvinfo"].get("driver"), "paravirtual"))',
           'disk.setdefault("type", "paravirtual")', "v1 disks all become paravirtual"),
    Mutant("U9", "store/upgrade.py", "runtime = data if fresh else copy.deepcopy(data)", "runtime = data",
           "the caller's data is upgraded in place"),
    Mutant("U10", "store/upgrade.py", 'if hvp.DISK_DRIVERS.get(dev["type"]) != dev["hvinfo"]["driver"]:', "if False:",
           "a disk type that contradicts its driver is accepted"),
    Mutant("U11", "store/upgrade.py", 'data["kvm_cmd"] = argv[:pos] + argv[pos + 2:]', 'data["kvm_cmd"] = list(argv)',
           "the v1 controller's -device stays in kvm_cmd (two controllers named scsi)"),
    Mutant("U12", "store/upgrade.py", "if mark is not None and mark not in MARKS:", "if False:", "any mark is accepted"),
    # -- model/hvinfo.py (validation) ----------------------------------------------------------------------------------
    Mutant("H1", "model/hvinfo.py", "unknown = sorted(set(hvinfo) - set(required) - set(optional))", "unknown = []",
           "an unknown hvinfo key is accepted"),
    Mutant("H2", "model/hvinfo.py", "int(match.group(1), 16) <= 0x1F", "int(match.group(1), 16) <= 0x20",
           "slot 0x20 is accepted"),
    Mutant("H3", "model/hvinfo.py", '"scsi-id": (_int_in(0, 255), "an integer 0-255"),', '"scsi-id": (_int_in(0, 256), "an integer 0-255"),',
           "scsi-id 256 is accepted"),
    Mutant("H4", "model/hvinfo.py", "isinstance(v, int) and not isinstance(v, bool) and low <= v <= high",
           "isinstance(v, int) and low <= v <= high", "true/false are accepted as integers"),
    Mutant("H5", "model/hvinfo.py", "if kinds is not None and kind not in kinds:", "if False:",
           "a driver of another kind is accepted (a disk driver on a NIC)"),
    Mutant("H6", "model/hvinfo.py", '"unit": (_int_in(0, 1), "0 or 1"),', '"unit": (_int_in(0, 3), "0 or 1"),', "IDE unit 2 is accepted"),
    Mutant("H7", "model/hvinfo.py", '"chassis_nr": (_int_in(1, 255)', '"chassis_nr": (_int_in(0, 255)', "chassis_nr 0 is accepted"),
    Mutant("H8", "model/hvinfo.py", 'bus_re = {"scsi": SCSI_BUS_RE, "ide": IDE_BUS_RE}.get(kind, PCI_BUS_RE)',
           r'bus_re = re.compile(r"^(pcie?\.[0-9]{1,3}|scsi[0-9]{0,3}\.0|ide\.[0-5])\Z")', "any bus name for any kind"),
    Mutant("H9", "model/hvinfo.py", r'ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,31}\Z")', r'ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,32}\Z")',
           "33-character ids are accepted"),
    Mutant("H10", "model/hvinfo.py", "    if missing:\n", "    if False:\n", "required keys may be missing"),
    Mutant("H11", "model/hvinfo.py", "return cast(HvInfo, {key: hvinfo[key] for key in KEY_ORDER if key in hvinfo})",
           "return cast(HvInfo, hvinfo)", "validate hands back the stored dict itself, in its order"),
    # -- ops/converge.py ---------------------------------------------------------------------------------------------------
    Mutant("C1", "ops/converge.py", "                if purge:\n", "                if False:\n", "plan() forgets purge: nothing is unplugged"),
    Mutant("C2", "ops/converge.py", 'kind.set_records(remaining, [d for d in kind.records(remaining) if not (purge and d["uuid"] not in wanted)])',
           "kind.set_records(remaining, list(kind.records(remaining)))", "adds do not reuse the addresses the unplugs free"),
    Mutant("C3", "ops/converge.py", '        for want in spec[kind.name]:\n            if want["uuid"] in known:',
           '        for want in reversed(spec[kind.name]):\n            if want["uuid"] in known:', "adds in reverse list order"),
    Mutant("C4", "ops/media.py", 'all(d.split(" ", 1)[0] in MEDIUM for d in differs)', 'any(d.split(" ", 1)[0] in MEDIUM for d in differs)',
           "a CD whose path and mode differ counts as a medium change"),
    Mutant("C5", "ops/media.py", '"format": want.get("format", cd["format"])}', '"format": cd["format"]}',
           "after() forgets the new medium's format"),
    Mutant("C6", "ops/converge.py", 'if d["hvinfo"]["id"] not in gone]', "if True]", "after() keeps the unplugged devices"),
    Mutant("C7", "ops/transaction.py", 'return [Item("controllers", dict(c)) for c in controllers] + [Item(kind.name, placed)]',
           'return [Item(kind.name, placed)] + [Item("controllers", dict(c)) for c in controllers]', "a new SCSI controller is plugged after its disk"),
    Mutant("C8", "ops/converge.py", "            elif differs:\n", "            elif False:\n", "property changes are silently ignored"),
    Mutant("C9", "ops/media.py", 'found.get("type") == "scsi-cd"', 'found.get("type") in ("scsi-cd", "paravirtual", "scsi-hd")',
           "any disk's path counts as a medium"),
    # -- fixes of the strict xfails ---------------------------------------------------------------------------------------
    Mutant("F1", "store/rundir.py", r'NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")',
           r'NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")', "an instance name with a trailing newline passes"),
    Mutant("F2", "ops/media.py", '        await mon.try_cmd("blockdev-del", {"node-name": dev_id})\n', "        pass\n",
           "a failed medium change leaves the new block node behind"),
    Mutant("F3", "qemu/qmp.py", "        if not commands:\n            return []\n", "", "an empty batch raises"),
    Mutant("F4", "store/upgrade.py", "    extra = sorted(set(record) - _DECLARED[kind])", "    extra: list[str] = []",
           "undeclared runtime fields are kept"),
    Mutant("F5", "ops/drift.py", "qdev not in skip:", "qdev not in skip and qdev not in present:",
           "a named device of an unknown kind in the hotplug window is no drift"),
]


PYTEST = [sys.executable, "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutants"]


class Copy(NamedTuple):
    root: Path  # the collections root: root/ansible_collections/kvmhv/qemu is the collection
    collection: Path
    env: dict[str, str]


def make_copy() -> Copy:
    """The files git knows, copied as they are in the working tree (uncommitted edits included) to a temporary collection."""
    root = Path(tempfile.mkdtemp(prefix="kvmhv-mutants-"))
    collection = root / "ansible_collections" / "kvmhv" / "qemu"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_symlink() or not source.is_file():  # a symlinked .venv, a file deleted but not yet committed
            continue
        (collection / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, collection / name)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(root), "ANSIBLE_COLLECTIONS_PATH": str(root)}
    return Copy(root, collection, env)


def check_copy(copy: Copy) -> None:
    """The copy is what the suite imports (never the working tree), and it passes unmutated."""
    where = subprocess.run([sys.executable, "-c", "import ansible_collections.kvmhv.qemu.plugins.module_utils as m; print(m.__file__)"],
                           cwd=copy.collection, env=copy.env, capture_output=True, text=True, check=False)
    if where.returncode != 0 or not Path(where.stdout.strip()).resolve().is_relative_to(copy.collection.resolve()):
        raise SystemExit(f"the copy's module_utils is not what gets imported: {where.stdout.strip() or where.stderr.strip()}")
    done = subprocess.run([*PYTEST, "--tb=short"], cwd=copy.collection, env=copy.env, capture_output=True, text=True, check=False,
                          timeout=TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"the unit suite fails without any mutant; fix that first:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")


def xfail_tests(copy: Copy) -> set[str]:
    """Node ids of the strict xfails (bugs in plugins/): one that passes under a mutant fails the run but kills nothing."""
    done = subprocess.run([*PYTEST, "--collect-only", "-m", "xfail"], cwd=copy.collection, env=copy.env, capture_output=True, text=True,
                          check=False)
    if done.returncode not in (0, 5):  # 5: nothing collected, no xfail left
        raise SystemExit(f"collecting the xfails failed:\n{done.stdout}{done.stderr}")
    return {line for line in done.stdout.splitlines() if "::" in line}


def run_suite(copy: Copy, xfails: set[str]) -> list[str]:
    """The failing tests (file::name, the first of each parametrized group), or ["timeout"] if the suite hung."""
    try:
        done = subprocess.run([*PYTEST, "--tb=no", "-rf"], cwd=copy.collection, env=copy.env, capture_output=True, text=True, check=False,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return ["timeout"]
    failed = [line[len("FAILED "):].split(" - ", 1)[0] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    failed = [nodeid for nodeid in failed if nodeid not in xfails]
    names: list[str] = []
    for nodeid in failed:
        name = nodeid.split("[", 1)[0].split("tests/unit/plugins/module_utils/", 1)[-1]
        if name not in names:
            names.append(name)
    if done.returncode != 0 and not names:  # the suite broke without a failing test (an import error, a crash)
        names.append(f"pytest exit {done.returncode}")
    return names


def apply(copy: Copy, mutant: Mutant, xfails: set[str]) -> tuple[str, list[str]]:
    """("killed", failing tests), ("SURVIVED", []) or ("ERROR", [why]); the copy's file is restored whatever happens."""
    path = copy.collection / MODULE_UTILS / mutant.file
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "ERROR", [f"no file {MODULE_UTILS / mutant.file} (moved?)"]
    found = original.count(mutant.old)
    if found != 1:
        return "ERROR", [f"the snippet occurs {found} times in {MODULE_UTILS / mutant.file}, not once (moved or changed?)"]
    try:
        path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
        failed = run_suite(copy, xfails)
    finally:
        path.write_text(original, encoding="utf-8")
    return ("killed", failed) if failed else ("SURVIVED", [])


def main(keys: list[str]) -> int:
    unknown = sorted(set(keys) - {m.key for m in MUTANTS})
    if unknown:
        raise SystemExit(f"no such mutant: {' '.join(unknown)}")
    chosen = [m for m in MUTANTS if not keys or m.key in keys]
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))  # a terminated run stops its pytest and removes its copy
    copy = make_copy()
    failures: dict[str, list[str]] = {"SURVIVED": [], "ERROR": []}
    try:
        check_copy(copy)
        xfails = xfail_tests(copy)
        for mutant in chosen:
            result, detail = apply(copy, mutant, xfails)
            if result == "killed":
                shown = "by " + ", ".join(detail[:3]) + (f" (+{len(detail) - 3})" if len(detail) > 3 else "")
            else:
                shown = "; ".join(detail) or "-"
                failures[result].append(mutant.key)
            print(f"| {mutant.key} | {mutant.file} | {mutant.what} | {result} {shown} |", flush=True)
    finally:
        shutil.rmtree(copy.root, ignore_errors=True)
    print(f"{len(chosen)} mutants: {len(chosen) - len(failures['SURVIVED']) - len(failures['ERROR'])} killed, "
          f"{len(failures['SURVIVED'])} survived, {len(failures['ERROR'])} in error", flush=True)
    if failures["SURVIVED"]:
        print(f"survivors: {' '.join(failures['SURVIVED'])}", file=sys.stderr)
    if failures["ERROR"]:
        print(f"in error (file or snippet not found): {' '.join(failures['ERROR'])}", file=sys.stderr)
    return 1 if failures["SURVIVED"] or failures["ERROR"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
