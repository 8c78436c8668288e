"""What the test guest sees, read from its serial log.

The guest (tests/guest) prints ``KVMHV-REPORT seq=N block=... net=... ping=...
scsi=... [pattern=...]`` when its devices change and every 2 s
(tests/guest/README.md has the grammar). Tests poll the log file for a report
that satisfies a predicate (polling a log in a test is fine; the collection
itself never sleeps). ``check_pattern_image`` checks, from the host, a disk
the guest wrote its pattern on (``kvmhv.pattern=<sectors>``).
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from polling import until

GUEST_SCRIPT = Path(__file__).resolve().parents[1] / "guest" / "build-guest.sh"
KERNEL_ARGS = "console=ttyS0 quiet panic=-1 mitigations=off"
# The first three tokens are fixed; newer guests add key=value tokens after.
_LINE = re.compile(r"KVMHV-REPORT seq=(\d+) block=(\S*) net=(\S*)((?: [a-z]+=\S*)*)")
_PATTERN = re.compile(r"(?P<dev>[^:]+):g(?P<gen>\d+):"
                      r"(?:(?P<state>waiting|writing|verifying|ok|ERR)|BAD@(?P<bad>\d+))"
                      r"(?::(?P<activity>writing|verifying))?")
PATTERN_LINE = 64  # bytes of one pattern line, newline included (tests/guest/init)


@dataclass(frozen=True)
class BlockDev:
    size_sectors: int
    hctl: str | None = None


class ScsiId(NamedTuple):
    vendor: str  # as in sysfs, blanks (and ':' ',') replaced by '_'
    model: str
    type: int  # SCSI peripheral type: 0 disk, 5 CD/DVD


@dataclass(frozen=True)
class PatternState:
    """The ``pattern=`` token: where the guest's disk pattern writer is.

    ``gen`` is the pass being written/verified (state ``writing``/
    ``verifying``, no pass verified yet), the last pass verified (state
    ``ok``; ``activity`` is then what pass gen+1 is doing), the pass that
    found block ``bad_block`` wrong (state ``bad``) or the pass that could
    not be carried out (state ``error``: a tool killed, say out of memory).
    The guest stops after ``bad`` and ``error``.
    """

    dev: str | None  # None while waiting for the disk
    gen: int
    state: str  # waiting | writing | verifying | ok | bad | error
    activity: str | None = None  # writing | verifying, after ok
    bad_block: int | None = None

    @property
    def verified(self) -> int:
        """The last generation the guest read back intact (0: none yet)."""
        return self.gen if self.state == "ok" else max(self.gen - 1, 0)

    @classmethod
    def parse(cls, text: str) -> PatternState:
        m = _PATTERN.fullmatch(text)
        if not m or (m["activity"] and m["state"] != "ok"):
            raise ValueError(f"bad pattern= token: {text!r}")
        bad = m["bad"]
        state = "bad" if bad else "error" if m["state"] == "ERR" else m["state"]
        return cls(None if m["dev"] == "-" else m["dev"], int(m["gen"]), state,
                   m["activity"], int(bad) if bad else None)


@dataclass
class Report:
    seq: int
    block: dict[str, BlockDev] = field(default_factory=dict)
    net: dict[str, str] = field(default_factory=dict)
    ping: dict[str, str] = field(default_factory=dict)  # ifname -> ok | fail | none (test-network NICs)
    scsi: dict[str, ScsiId] = field(default_factory=dict)  # H:C:T:L -> identity
    pattern: PatternState | None = None  # None: no kvmhv.pattern= (or an older guest)
    extra: dict[str, str] = field(default_factory=dict)  # tokens this parser does not know

    def disks_by_size(self) -> dict[int, str]:
        """size in sectors -> guest device name (tests give disks distinct sizes)."""
        return {dev.size_sectors: name for name, dev in self.block.items()}

    def macs(self) -> set[str]:
        return set(self.net.values())

    def pings_ok(self) -> set[str]:
        """Test-network NICs whose latest ping of the host succeeded."""
        return {ifname for ifname, state in self.ping.items() if state == "ok"}


def _scsi(value: str) -> dict[str, ScsiId]:
    scsi = {}
    for item in filter(None, value.split(",")):
        h, c, t, lun, vendor, model, kind = item.split(":")
        scsi[f"{h}:{c}:{t}:{lun}"] = ScsiId(vendor, model, int(kind))
    return scsi


def parse_reports(text: str) -> list[Report]:
    """Every report line in ``text``, old (block= net= only) or new."""
    reports = []
    for match in _LINE.finditer(text):
        block: dict[str, BlockDev] = {}
        for item in filter(None, match.group(2).split(",")):
            name, rest = [*item.split(":", 1), ""][:2]
            size, hctl = [*rest.split("@", 1), ""][:2]
            block[name] = BlockDev(int(size or 0), hctl or None)
        net = {}
        for item in filter(None, match.group(3).split(",")):
            ifname, mac = item.split(":", 1)
            net[ifname] = mac
        report = Report(int(match.group(1)), block, net)
        for token in match.group(4).split():
            key, value = token.split("=", 1)
            if key == "ping":
                report.ping = dict(item.split(":", 1) for item in filter(None, value.split(",")))
            elif key == "scsi":
                report.scsi = _scsi(value)
            elif key == "pattern":
                report.pattern = PatternState.parse(value)
            else:
                report.extra[key] = value
        reports.append(report)
    return reports


def latest_report(log_path: str) -> Report | None:
    try:
        text = Path(log_path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    # The guest may be half-way through its last line: only whole lines count.
    reports = parse_reports(text[:text.rfind("\n") + 1])
    return reports[-1] if reports else None


def wait_for_report(log_path: str, predicate: Callable[[Report], bool], timeout: float = 60.0,
                    after_seq: int = 0) -> Report:
    """The first report (newest first, seq > after_seq) that satisfies ``predicate``."""
    last: list[Report | None] = [None]

    def matching() -> Report | None:
        last[0] = latest_report(log_path)
        return last[0] if last[0] is not None and last[0].seq > after_seq and predicate(last[0]) else None

    try:
        return until(matching, timeout, "guest never reported the expected state", 0.1)
    except AssertionError as err:
        raise AssertionError(f"{err}; last report: {last[0]}") from None


@functools.lru_cache(maxsize=1)
def guest_dir() -> str:
    """Build (or reuse from the cache) the test guest; return its directory."""
    out = subprocess.run(["bash", str(GUEST_SCRIPT)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def guest_hvparams(**extra: object) -> dict[str, object]:
    """hvparams that boot the test guest under TCG."""
    base = guest_dir()
    return {"kernel_path": f"{base}/vmlinuz", "initrd_path": f"{base}/initrd.img",
            "kernel_args": KERNEL_ARGS, "accel": "tcg", **extra}


def _pattern_line(gen: int, block: int) -> bytes:
    line = f"G{gen} B{block}".encode()
    return line.ljust(PATTERN_LINE - 1) + b"\n"


def _describe(data: bytes, want: bytes, offset: int) -> str:
    """Where ``data`` first differs from ``want``, and what is there."""
    at = next(i for i in range(len(data)) if data[i] != want[i])
    start = at - at % PATTERN_LINE
    return f"first difference at image offset {offset + at}: found {data[start:start + PATTERN_LINE]!r}"


def _block_gen(data: bytes, index: int, offset: int, path: str) -> int:
    """The generation block ``index`` holds (0: never written, all zeros)."""
    if data == bytes(len(data)):
        return 0
    m = re.match(rb"G(\d+) B(\d+) *\n", data[:PATTERN_LINE])
    if not m or m.end() != PATTERN_LINE:
        raise AssertionError(f"{path}: block {index} (offset {offset}) does not start with a pattern line: "
                             f"{data[:PATTERN_LINE]!r}")
    gen = int(m[1])
    if int(m[2]) != index:
        raise AssertionError(f"{path}: block {index} (offset {offset}) holds block {int(m[2])}'s pattern "
                             f"(generation {gen})")
    want = _pattern_line(gen, index) * (len(data) // PATTERN_LINE)
    if data != want:
        raise AssertionError(f"{path}: block {index} (offset {offset}) is not only generation {gen}'s line: "
                             + _describe(data, want, offset))
    return gen


def _torn(data: bytes, index: int, gen: int) -> bool:
    """Whether block ``index`` is made only of 512-byte sectors of generations gen and gen-1."""
    new = _pattern_line(gen, index) * (512 // PATTERN_LINE)
    old = _pattern_line(gen - 1, index) * (512 // PATTERN_LINE) if gen > 1 else bytes(512)
    return all(data[i:i + 512] in (new, old) for i in range(0, len(data), 512))


def check_pattern_image(path: str, block_size: int = 1 << 20, *, allow_torn: bool = False) -> tuple[int, int]:
    """Check a raw image the guest's pattern writer (``kvmhv.pattern=``) wrote.

    Every whole ``block_size`` block must hold only its own pattern line,
    ``G<gen> B<index>`` padded with blanks to 63 bytes plus a newline,
    repeated; an all-zero block is generation 0 (never written). A trailing
    partial block is ignored, as the guest does. Generations must be what a
    sequential writer leaves: all equal, or a prefix at g and the rest at
    g-1. With ``allow_torn``, the one block between the two may mix 512-byte
    sectors of g and g-1 (an image taken while the guest was stopped in the
    middle of a write). Returns (lowest, highest) generation; raises
    AssertionError naming the first offending block otherwise.
    """
    if block_size % 512 or block_size <= 0:
        raise ValueError("block_size must be a positive multiple of 512")
    gens: list[int | None] = []
    bad: list[tuple[int, bytes, AssertionError]] = []
    with open(path, "rb") as image:
        while len(data := image.read(block_size)) == block_size:
            index = len(gens)
            try:
                gens.append(_block_gen(data, index, index * block_size, path))
            except AssertionError as err:
                gens.append(None)
                bad.append((index, data, err))
    if not gens:
        raise AssertionError(f"{path}: smaller than one {block_size}-byte block")
    if bad:
        index, data, err = bad[0]
        if not allow_torn or len(bad) > 1:
            raise err
        new = gens[index - 1] if index > 0 else None
        if new is None and index + 1 < len(gens):
            new = gens[index + 1] + 1  # type: ignore[operator]  # the only None is at index
        if not new or not _torn(data, index, new):
            raise err
        want = [new] * index + [None] + [new - 1] * (len(gens) - index - 1)
        for i, (got, expected) in enumerate(zip(gens, want, strict=True)):
            if got != expected:
                raise AssertionError(f"{path}: block {index} is a torn write of generation {new}, so blocks "
                                     f"before it must be at {new} and after it at {new - 1}, but block {i} is "
                                     f"at {got}")
        return new - 1, new
    known = [gen for gen in gens if gen is not None]
    top = known[0]
    for i in range(1, len(known)):
        if known[i] not in (top, top - 1):
            raise AssertionError(f"{path}: block {i} is at generation {known[i]} but block 0 at {top}: "
                                 "a sequential writer leaves a prefix at g and the rest at g-1")
        if known[i] > known[i - 1]:
            raise AssertionError(f"{path}: block {i} is at generation {known[i]} after block {i - 1} at "
                                 f"{known[i - 1]}: a sequential writer leaves a prefix at g and the rest at g-1")
    return min(known), top
