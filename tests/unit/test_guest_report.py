"""The test guest's report parser and pattern-image checker (tests/integration/guest_report.py), on made-up data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from guest_report import (
    BlockDev,
    PatternState,
    Report,
    ScsiId,
    check_pattern_image,
    latest_report,
    parse_reports,
)

OLD = "KVMHV-REPORT seq=3 block=sda:4096@0:0:1:0,vda:2048 net=eth0:52:54:00:00:00:11\r\n"
NEW = ("KVMHV-REPORT seq=7 block=sda:32768@0:0:0:0,sr0:8192@0:0:1:0,vdb:131072 "
       "net=eth0:52:54:00:4b:00:10,eth1:52:54:00:12:34:56 ping=eth0:ok "
       "scsi=0:0:0:0:QEMU:QEMU_HARDDISK:0,0:0:1:0:QEMU:QEMU_CD-ROM:5 pattern=vdb:g3:ok:writing\r\n")

# --- parsing


def test_old_format_line_still_parses():
    (report,) = parse_reports("noise\r\n" + OLD)
    assert report == Report(3, {"sda": BlockDev(4096, "0:0:1:0"), "vda": BlockDev(2048)}, {"eth0": "52:54:00:00:00:11"})
    assert report.ping == {} and report.scsi == {} and report.pattern is None and report.extra == {}
    assert report.disks_by_size() == {4096: "sda", 2048: "vda"}
    assert report.macs() == {"52:54:00:00:00:11"}


def test_new_format_line():
    (report,) = parse_reports(NEW)
    assert report.seq == 7
    assert report.block["sr0"] == BlockDev(8192, "0:0:1:0")
    assert report.net == {"eth0": "52:54:00:4b:00:10", "eth1": "52:54:00:12:34:56"}
    assert report.ping == {"eth0": "ok"}
    assert report.pings_ok() == {"eth0"}
    assert report.scsi == {"0:0:0:0": ScsiId("QEMU", "QEMU_HARDDISK", 0), "0:0:1:0": ScsiId("QEMU", "QEMU_CD-ROM", 5)}
    assert report.scsi["0:0:1:0"].type == 5
    assert report.pattern == PatternState("vdb", 3, "ok", "writing")
    assert report.pattern.verified == 3


def test_empty_tokens_and_no_pattern():
    (report,) = parse_reports("KVMHV-REPORT seq=1 block= net= ping= scsi=\n")
    assert report == Report(1)


def test_mixed_old_and_new_lines_in_one_log():
    reports = parse_reports(OLD + NEW + OLD.replace("seq=3", "seq=8"))
    assert [r.seq for r in reports] == [3, 7, 8]
    assert reports[1].pattern is not None and reports[2].pattern is None


def test_unknown_tokens_are_kept():
    (report,) = parse_reports("KVMHV-REPORT seq=2 block=vda:2048 net= ping= scsi= future=x:y\n")
    assert report.extra == {"future": "x:y"}


@pytest.mark.parametrize(("token", "want", "verified"), [
    ("-:g0:waiting", PatternState(None, 0, "waiting"), 0),
    ("vdb:g1:writing", PatternState("vdb", 1, "writing"), 0),
    ("vdb:g1:verifying", PatternState("vdb", 1, "verifying"), 0),
    ("vdb:g2:ok", PatternState("vdb", 2, "ok"), 2),
    ("vdb:g2:ok:verifying", PatternState("vdb", 2, "ok", "verifying"), 2),
    ("sdb:g5:BAD@17", PatternState("sdb", 5, "bad", None, 17), 4),
    ("vdb:g2:ERR", PatternState("vdb", 2, "error"), 1),
])
def test_pattern_tokens(token, want, verified):
    (report,) = parse_reports(f"KVMHV-REPORT seq=1 block= net= ping= scsi= pattern={token}\n")
    assert report.pattern == want
    assert report.pattern.verified == verified


@pytest.mark.parametrize("token", ["vdb:3:ok", "vdb:g3:fine", "vdb:g3:writing:verifying", "vdb:g3:BAD@x", "vdb:g3:ok:done",
                                   "vdb:g3:ERR:writing"])
def test_bad_pattern_tokens_raise(token):
    with pytest.raises(ValueError, match="pattern"):
        parse_reports(f"KVMHV-REPORT seq=1 block= net= ping= scsi= pattern={token}\n")


def test_scsi_identity_with_underscores():
    (report,) = parse_reports("KVMHV-REPORT seq=1 block=sdb:49152@1:0:3:0 net= ping= scsi=1:0:3:0:ACME_Co:Disk__one:0\n")
    assert report.scsi == {"1:0:3:0": ScsiId("ACME_Co", "Disk__one", 0)}


def test_latest_report_ignores_a_half_written_last_line(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text(NEW + "KVMHV-REPORT seq=8 block=vdb:1310")
    report = latest_report(str(log))
    assert report is not None and report.seq == 7
    assert latest_report(str(tmp_path / "missing.log")) is None


# --- pattern images

BS = 4096  # small blocks keep the images tiny; the format does not care


def block(gen: int, index: int, size: int = BS) -> bytes:
    line = f"G{gen} B{index}".encode().ljust(63) + b"\n"
    return line * (size // 64)


def image(tmp_path: Path, blocks: list[bytes], tail: bytes = b"") -> str:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"".join(blocks) + tail)
    return str(path)


def test_all_blocks_of_one_generation(tmp_path):
    assert check_pattern_image(image(tmp_path, [block(4, i) for i in range(8)]), BS) == (4, 4)


def test_prefix_at_g_rest_at_g_minus_1(tmp_path):
    blocks = [block(5, i) for i in range(3)] + [block(4, i) for i in range(3, 8)]
    assert check_pattern_image(image(tmp_path, blocks), BS) == (4, 5)


def test_first_pass_in_progress_leaves_zeros(tmp_path):
    blocks = [block(1, 0), block(1, 1)] + [bytes(BS)] * 3
    assert check_pattern_image(image(tmp_path, blocks), BS) == (0, 1)


def test_partial_tail_is_ignored(tmp_path):
    assert check_pattern_image(image(tmp_path, [block(2, 0), block(2, 1)], tail=b"junk"), BS) == (2, 2)


def test_default_block_size_is_one_mib(tmp_path):
    path = image(tmp_path, [block(3, 0, 1 << 20), block(2, 1, 1 << 20)])
    assert check_pattern_image(path) == (2, 3)


def test_corrupted_byte_is_located(tmp_path):
    data = bytearray(b"".join(block(2, i) for i in range(4)))
    data[2 * BS + 700] ^= 0x20
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(data))
    with pytest.raises(AssertionError, match=rf"block 2 \(offset {2 * BS}\) .*offset {2 * BS + 700}"):
        check_pattern_image(str(path), BS)


def test_zeroed_block_among_written_ones(tmp_path):
    blocks = [block(2, 0), bytes(BS), block(2, 2)]
    with pytest.raises(AssertionError, match="block 1 is at generation 0 but block 0 at 2"):
        check_pattern_image(image(tmp_path, blocks), BS)


def test_block_with_another_blocks_content(tmp_path):
    blocks = [block(2, 0), block(2, 0), block(2, 2)]
    with pytest.raises(AssertionError, match=r"block 1 .* holds block 0's pattern"):
        check_pattern_image(image(tmp_path, blocks), BS)


def test_older_generation_before_newer_one(tmp_path):
    blocks = [block(4, 0), block(3, 1), block(4, 2)]
    with pytest.raises(AssertionError, match="block 2 is at generation 4 after block 1 at 3"):
        check_pattern_image(image(tmp_path, blocks), BS)


def test_generations_two_passes_apart(tmp_path):
    blocks = [block(5, 0), block(3, 1)]
    with pytest.raises(AssertionError, match="block 1 is at generation 3 but block 0 at 5"):
        check_pattern_image(image(tmp_path, blocks), BS)


def test_line_not_a_pattern_line(tmp_path):
    blocks = [block(1, 0), b"x" * BS]
    with pytest.raises(AssertionError, match=r"block 1 .* does not start with a pattern line"):
        check_pattern_image(image(tmp_path, blocks), BS)


def torn(gen: int, index: int, new_sectors: set[int]) -> bytes:
    new, old = block(gen, index), block(gen - 1, index) if gen > 1 else bytes(BS)
    return b"".join((new if s in new_sectors else old)[s * 512:(s + 1) * 512] for s in range(BS // 512))


def test_torn_block_only_with_allow_torn(tmp_path):
    blocks = [block(3, 0), block(3, 1), torn(3, 2, {0, 1, 5}), block(2, 3)]
    path = image(tmp_path, blocks)
    with pytest.raises(AssertionError, match=r"block 2 .* not only generation 3's line"):
        check_pattern_image(path, BS)
    assert check_pattern_image(path, BS, allow_torn=True) == (2, 3)


def test_torn_first_pass_block_mixes_with_zeros(tmp_path):
    path = image(tmp_path, [block(1, 0), torn(1, 1, {2}), bytes(BS)])
    assert check_pattern_image(path, BS, allow_torn=True) == (0, 1)


def test_torn_block_must_sit_at_the_boundary(tmp_path):
    blocks = [block(3, 0), torn(3, 1, {0}), block(3, 2)]
    with pytest.raises(AssertionError, match=r"block 1 is a torn write of generation 3.*block 2 is at 3"):
        check_pattern_image(image(tmp_path, blocks), BS, allow_torn=True)


def test_two_torn_blocks_are_too_many(tmp_path):
    blocks = [block(3, 0), torn(3, 1, {0}), torn(3, 2, {1})]
    with pytest.raises(AssertionError, match="block 1"):
        check_pattern_image(image(tmp_path, blocks), BS, allow_torn=True)


def test_garbage_is_not_a_torn_block(tmp_path):
    data = bytearray(torn(3, 1, {0}))
    data[600] = 0
    with pytest.raises(AssertionError, match="block 1"):
        check_pattern_image(image(tmp_path, [block(3, 0), bytes(data), block(2, 2)]), BS, allow_torn=True)


def test_image_smaller_than_a_block(tmp_path):
    with pytest.raises(AssertionError, match="smaller than one"):
        check_pattern_image(image(tmp_path, [], tail=b"G1 B0"), BS)


def test_block_size_must_be_whole_sectors(tmp_path):
    with pytest.raises(ValueError, match="multiple of 512"):
        check_pattern_image(image(tmp_path, [block(1, 0)]), 1000)
