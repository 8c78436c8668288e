"""KvmError: one line, the step in front, QEMU's error class kept through with_step."""

from __future__ import annotations

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils import errors
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError, KvmTimeout, QmpClosed


def test_one_line_whatever_the_message():
    err = KvmError("QEMU said:\n  Duplicate   ID\t'd1'\n")
    assert err.msg == "QEMU said: Duplicate ID 'd1'" and str(err) == err.msg
    assert (err.step, err.error_class) == (None, None)
    assert str(KvmError(42)) == "42"


def test_the_step_prefixes_the_message_only_in_str():
    err = KvmError("no room", "device_add", "GenericError")
    assert str(err) == "device_add: no room" and err.msg == "no room"
    assert (err.step, err.error_class) == ("device_add", "GenericError")
    assert str(KvmError("x", "")) == "x"  # an empty step is no step


@pytest.mark.parametrize("cls", [KvmError, KvmTimeout, QmpClosed])
def test_with_step_keeps_type_message_and_class(cls):
    err = cls("lost it", "qom-list", errors.DEVICE_NOT_FOUND)
    moved = err.with_step("reconcile")
    assert moved.__class__ is cls and moved is not err  # the same class, not a base
    assert (moved.msg, moved.step, moved.error_class) == ("lost it", "reconcile", "DeviceNotFound")
    assert str(moved) == "reconcile: lost it" and err.step == "qom-list"


def test_hierarchy():
    assert issubclass(KvmTimeout, KvmError) and issubclass(QmpClosed, KvmError)
    assert not issubclass(KvmTimeout, QmpClosed)
    assert errors.DEVICE_NOT_FOUND == "DeviceNotFound"
