"""The session without QEMU: which monitor a reader uses, and the status of an instance with no QEMU."""

from __future__ import annotations

import asyncio


from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths

from ....builders import runtime, session_on


def test_query_socket_prefers_the_read_only_monitor(rd):
    where = paths(rd.path, "vm1")
    session = session_on(rd, check=True)
    assert session.query_socket() == where.qmp
    rd.write_atomic("vm1.ro.qmp", "")
    assert session.query_socket() == where.qmp  # a file of that name is no monitor
    rd.unlink("vm1.ro.qmp")
    sock = rd.listen("vm1.ro.qmp")
    try:
        assert session.query_socket() == where.qmp_ro
    finally:
        sock.close()


def test_status_without_a_qemu(rd):
    session = session_on(rd)
    assert asyncio.run(session.status()) == ("absent", None)
    runtime_file.save(rd, "vm1", runtime([], []))
    assert asyncio.run(session.status()) == ("stopped", None)
