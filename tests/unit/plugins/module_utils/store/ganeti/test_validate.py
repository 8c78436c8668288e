"""Strict checks of what a Ganeti read adds to a runtime (fixed devices, an adopted QEMU), on every stored file."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import upgrade

from .runtimes import read


def test_validation_refuses_hostile_fixed_devices_and_adoption():
    good = read("v2_1_runas_localtime_usbdevice")
    for mutate, message in [
        (lambda rt: rt["fixed"][2]["drive"].update({"file": "/etc/shadow"}), "drive option file="),
        (lambda rt: rt["fixed"][2]["drive"].update({"cache": "none,id=x"}), "drive option cache="),
        (lambda rt: rt["fixed"][2].update({"at": 999}), "not inside kvm_cmd"),
        (lambda rt: rt["fixed"][0].update({"driver": "virtio-net-pci,romfile=/x"}), "not a NIC driver"),
        (lambda rt: rt["fixed"][1].update({"netdev": "netdev0"}), "used twice"),
        (lambda rt: rt["fixed"][0].update({"network": {"type": "tap", "ifname": "a;b"}}), "not an interface name"),
        (lambda rt: rt.update({"adopted": {"qmp": "relative.sock", "pidfile": "/p"}}), "must be an absolute path"),
        (lambda rt: rt.update({"adopted": {"qmp": "/q", "pidfile": "/p", "evil": 1}}), "must be a mapping of runtime, qmp, pidfile and started"),
        (lambda rt: rt.update({"adopted": {"qmp": "/q", "pidfile": "/p", "started": -1}}), "adopted started must be a start time"),
    ]:
        rt = json.loads(json.dumps(good))
        mutate(rt)
        with pytest.raises(KvmError) as err:
            upgrade.upgrade(rt)
        assert message in str(err.value), (message, str(err.value))
