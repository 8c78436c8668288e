"""QEMU's option text (QemuOpts) and option groups, as the Ganeti codec cuts a kvm_cmd."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import opts


def test_qemuopts_text_round_trips_commas():
    assert opts.split_opts("file=/a,,b,if=virtio,boot=on") == ["file=/a,b", "if=virtio", "boot=on"]
    assert opts.join_opts(["file=/a,b", "if=virtio"]) == "file=/a,,b,if=virtio"
    assert opts.split_opts("") == [""] and opts.split_opts("a,") == ["a", ""]


def test_an_unknown_flag_never_swallows_the_option_after_it():
    assert opts.groups_of(["kvm", "-sdl", "-incoming", "tcp:0:4444", "-m", "512"]) == [
        ["-sdl"], ["-incoming", "tcp:0:4444"], ["-m", "512"]]
    assert opts.groups_of(["kvm", "-some-new-flag", "-daemonize", "-name", "vm1"]) == [
        ["-some-new-flag"], ["-daemonize"], ["-name", "vm1"]]
    assert opts.groups_of(["kvm", "-append", "console=ttyS0 -v"])[0] == ["-append", "console=ttyS0 -v"]


def test_fields_of_an_option_argument():
    assert opts.kv("if=virtio") == ("if", "virtio") and opts.kv("tls") == ("tls", None) and opts.kv("a=") == ("a", "")
    assert opts.first_field("vm1.example.org,debug-threads=on", "guest") == "vm1.example.org"
    assert opts.first_field("guest=vm1,process=x", "guest") == "vm1" and opts.first_field("cores=2", "cpus") is None
    assert opts.first_field(None, "cpus") is None
    argv = ["kvm", "-m", "512", "--smp", "2", "-m", "1024"]
    assert opts.argv_value(argv, "m") == "512" and opts.argv_value(argv, "smp") == "2" and opts.argv_value(argv, "uuid") is None
    assert opts.find(opts.groups_of(argv), "m") == [["-m", "512"], ["-m", "1024"]]
    assert opts.opt_name("--m") == "m" and opts.opt_name("-") is None and opts.opt_name("x") is None
