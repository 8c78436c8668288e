"""Migration URIs: tcp:HOST:PORT and unix:/PATH, nothing else."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri


@pytest.mark.parametrize("text,parsed", [
    ("tcp:10.0.0.2:4444", ("tcp", "10.0.0.2", 4444, None)),
    ("tcp:host-b.example:1", ("tcp", "host-b.example", 1, None)),
    ("tcp:[fd00::2]:65535", ("tcp", "[fd00::2]", 65535, None)),
    ("unix:/run/kvmhv/vm1.migrate", ("unix", None, None, "/run/kvmhv/vm1.migrate")),
    ("unix:/a dir/with,comma", ("unix", None, None, "/a dir/with,comma")),
])
def test_accepted(text, parsed):
    got = uri.parse(text, "target_uri")
    assert (got.kind, got.host, got.port, got.path) == parsed and got.uri == text


@pytest.mark.parametrize("text", [
    "tcp:host:0", "tcp:host:65536", "tcp:host:123456", "tcp:host", "tcp::4444", "tcp:-host:4444", "tcp:a_b:4444",
    "tcp:host:44a", "tcp:[fd00::2:4444", "unix:relative", "unix:", "unix:/a\nb", "unix:/a\x00b", "exec:cat", "fd:3",
    "rdma:host:4444", "TCP:host:4444", "", None, 4444, ["tcp:h:1"],
])
def test_refused_naming_the_option(text):
    with pytest.raises(KvmError) as err:
        uri.parse(text, "migration_uri")
    assert str(err.value).startswith(f"migration_uri {text!r} must be tcp:HOST:PORT (port 1-65535) or unix:/PATH")


def test_host_names_up_to_253_characters():
    long_host = "a" + "b" * 252
    assert uri.parse(f"tcp:{long_host}:1", "x").host == long_host
    with pytest.raises(KvmError):
        uri.parse(f"tcp:{long_host}c:1", "x")


@pytest.mark.parametrize("text", ["unix:/tmp/x\n", "tcp:host:4444\n"])
def test_a_trailing_newline_is_refused(text):
    with pytest.raises(KvmError):
        uri.parse(text, "x")
