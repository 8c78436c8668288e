"""The module glue: run() turns results and KvmErrors into exit_json/fail_json; the shared option specs match the model."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils import common
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams


class Exited(Exception):
    """What exit_json/fail_json do instead of leaving the process."""

    def __init__(self, how: str, result: dict[str, Any]) -> None:
        super().__init__(how)
        self.how, self.result = how, result


class FakeModule:
    def __init__(self, params: dict[str, Any], check_mode: bool = False, diff: bool = False) -> None:
        self.params, self.check_mode, self._diff = params, check_mode, diff
        self.warned: list[str] = []

    def warn(self, message: str) -> None:
        self.warned.append(message)

    def exit_json(self, **result: Any) -> None:
        raise Exited("exit", result)

    def fail_json(self, **result: Any) -> None:
        raise Exited("fail", result)


def test_run_hands_the_operation_a_call_and_exits_with_its_result():
    seen: list[Call] = []

    async def op(call: Call) -> dict[str, Any]:
        seen.append(call)
        call.warn("first")
        call.warn("second")
        return {"changed": True, "x": 1}

    module = FakeModule({"name": "vm1"}, check_mode=True, diff=True)
    with pytest.raises(Exited) as done:
        common.run(module, op)  # type: ignore[arg-type]
    assert (done.value.how, done.value.result) == ("exit", {"changed": True, "x": 1})
    assert module.warned == ["first", "second"]
    assert (seen[0].params, seen[0].check, seen[0].diff) == ({"name": "vm1"}, True, True)


def test_a_kvm_error_is_a_one_line_failure_and_keeps_the_warnings():
    async def op(call: Call) -> dict[str, Any]:
        call.warn("before the failure")
        raise KvmError("QEMU refused\ndevice_add", "device_add")

    module = FakeModule({})
    with pytest.raises(Exited) as done:
        common.run(module, op)  # type: ignore[arg-type]
    assert (done.value.how, done.value.result) == ("fail", {"msg": "device_add: QEMU refused device_add"})
    assert module.warned == ["before the failure"]


def test_other_exceptions_are_not_hidden():
    async def op(call: Call) -> dict[str, Any]:
        raise ValueError("a bug")

    module = FakeModule({})
    with pytest.raises(ValueError, match="a bug"):
        common.run(module, op)  # type: ignore[arg-type]
    assert module.warned == []


def test_calls_do_not_share_warnings():
    a, b = Call({}), Call({})
    a.warn("only a")
    assert (a.warnings, b.warnings) == (["only a"], [])
    assert (a.check, a.diff) == (False, False)


class RecordingModule(FakeModule):
    made: list[dict[str, Any]] = []

    def __init__(self, argument_spec: dict[str, Any], supports_check_mode: bool, **kwargs: Any) -> None:
        super().__init__({})
        RecordingModule.made.append({"argument_spec": argument_spec, "supports_check_mode": supports_check_mode, **kwargs})


def test_new_module_adds_the_common_options_and_fails_cleanly_without_qemu_qmp(monkeypatch):
    monkeypatch.setattr(common, "AnsibleModule", RecordingModule)
    RecordingModule.made = []
    module = common.new_module({"name": {"type": "str"}}, mutually_exclusive=[["a", "b"]])
    spec = RecordingModule.made[0]
    assert set(spec["argument_spec"]) == {"name", "runtime_dir", "qemu_binary", "qemu_user"}
    assert spec["supports_check_mode"] is True and spec["mutually_exclusive"] == [["a", "b"]]
    assert isinstance(module, RecordingModule)
    monkeypatch.setattr(common.qmp, "HAS_QMP", False)
    monkeypatch.setattr(common.qmp, "QMP_IMPORT_ERROR", "Traceback: no qemu")
    with pytest.raises(Exited) as done:
        common.new_module({})
    assert done.value.how == "fail" and "qemu.qmp" in done.value.result["msg"]
    assert done.value.result["exception"] == "Traceback: no qemu"


def test_option_specs_match_the_model():
    assert common.COMMON_ARGS["runtime_dir"]["default"] == "/run/kvmhv"
    assert common.COMMON_ARGS["qemu_user"]["default"] == "kvmhv-qemu"
    assert set(common.DISK_OPTIONS) == {"path", "uri", "format", "mode", "uuid", "type"}
    assert tuple(common.DISK_OPTIONS["format"]["choices"]) == devices.DISK_FORMATS
    assert common.DISK_OPTIONS["format"]["default"] == devices.disk_record({"path": "/a"}, devices.derived_uuid("i"))["format"]
    assert tuple(common.DISK_OPTIONS["mode"]["choices"]) == devices.DISK_MODES
    assert "default" not in common.DISK_OPTIONS["mode"]  # rw, or ro for a CD: decided by the record
    assert set(common.DISK_OPTIONS["type"]["choices"]) == set(hvparams.DISK_DRIVERS) | set(hvparams.DISK_TYPE_ALIASES)
    assert set(common.NIC_OPTIONS) == {"mac", "uuid", "network"}
    assert common.HOTPLUG_ARGS["state"]["choices"] == ["present", "absent"]
    # every option a record accepts is an option, and no other: a spec built from all options is valid
    full_disk = {key: None for key in common.DISK_OPTIONS}
    assert devices.disk_record({**full_disk, "path": "/a"}, devices.derived_uuid("i"))["path"] == "/a"
    assert devices.nic_record({key: None for key in common.NIC_OPTIONS}, devices.derived_uuid("i"), 0)["network"] is None
