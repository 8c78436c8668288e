"""The fixed part of the command line: what it records and how every value is kept to its option."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams, kvm_cmd


def test_fixed_argv():
    plain = kvm_cmd.fixed_argv("/usr/bin/qemu", "vm,1", "u-1", 256.0, 2, hvparams.normalize({"accel": "tcg"}))
    assert plain == ["/usr/bin/qemu", "-name", "vm,,1", "-uuid", "u-1", "-machine", "pc,accel=tcg", "-m", "256", "-smp", "2",
                     "-nodefaults", "-display", "none"]
    full = kvm_cmd.fixed_argv("qemu", "vm1", "u", 128, 1, hvparams.normalize({
        "machine_type": "pc-q35-8.2", "cpu_type": "host,+avx2", "kernel_path": "/k", "initrd_path": "/i", "kernel_args": "a=b c"}))
    assert full[full.index("-machine") + 1] == "pc-q35-8.2,accel=kvm"
    assert full[full.index("-cpu") + 1] == "host,+avx2"
    assert full[full.index("-kernel"):full.index("-kernel") + 6] == ["-kernel", "/k", "-initrd", "/i", "-append", "a=b c"]
    assert full[-2:] == ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    # initrd and append need a kernel (normalize refuses an initrd alone; append alone is dropped)
    no_kernel = kvm_cmd.fixed_argv("qemu", "vm1", "u", 128, 1, hvparams.normalize({"kernel_args": "quiet"}))
    assert "-append" not in no_kernel and "-kernel" not in no_kernel and "-global" not in no_kernel
