"""Ganeti's kvm_cmd made current: plumbing set aside, options current QEMU rejects rewritten in place, -drive disks
become fixed disks put back where they were."""

from __future__ import annotations

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed as qemu_fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.argv import HostFds
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import kvm_cmd
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import read as ganeti_read

from .runtimes import LINK0, LINK1, raw, read, read_data


def test_2_1_runas_localtime_usbdevice_ide_drives_in_place():
    rt = read("v2_1_runas_localtime_usbdevice")
    cmd = rt["kvm_cmd"]
    assert "-localtime" not in cmd and cmd[cmd.index("-rtc") + 1] == "base=localtime"
    assert "-usbdevice" not in cmd and cmd[cmd.index("-usb") + 1:cmd.index("-usb") + 3] == ["-device", "usb-tablet"]
    assert rt["ganeti"]["plumbing"][-2:] == [["-chroot", "/var/run/ganeti/kvm-hypervisor/chroot/vm1.example.org"], ["-runas", "kvmuser"]]
    nics = [n for n in rt["fixed"] if n["kind"] == "nic"]
    assert [n["mac"] for n in nics] == ["aa:00:00:11:22:33", "aa:00:00:44:55:66"]  # upper case MAC read as lower case
    assert [n["uuid_from_mac"] for n in nics] == [True, True] and [n["netdev"] for n in nics] == ["netdev0", "netdev1"]
    assert nics[1]["network"] == {"type": "tap", "ifname": nics[1]["network"]["ifname"]}  # routed: no bridge
    assert nics[1]["ganeti"] == {"ip": "192.0.2.10", "nicparams": {"mode": "routed", "link": "rt100"}}
    drives = [d for d in rt["fixed"] if d["kind"] == "disk"]
    assert [(d["path"], d["render"], d["drive"], d["at"]) for d in drives] == [
        (LINK0, "drive", {"if": "ide", "cache": "none"}, cmd.index("-boot") + 2),
        (LINK1, "drive", {"if": "ide", "cache": "none"}, cmd.index("-boot") + 2)]
    assert [key for key, _disk in fixed.disks(rt)] == ["fixed2", "fixed2:ro", "fixed3", "fixed3:ro"]  # -drive opens read-only first
    fds = HostFds(3, 4, 5, {"fixed2": (20, False), "fixed2:ro": (22, False), "fixed3": (21, True), "fixed3:ro": (23, True)},
                  {"netdev0": 30, "netdev1": 31})
    head, _tail = qemu_fixed.render(rt, fds, 2)
    at = cmd.index("-boot") + 2
    assert head[at:at + 12] == ["-add-fd", "fd=20,set=2,opaque=fixed2", "-add-fd", "fd=22,set=2,opaque=fixed2",
                                "-drive", "file=/dev/fdset/2,format=raw,if=ide,cache=none",
                                "-add-fd", "fd=21,set=3,opaque=fixed3", "-add-fd", "fd=23,set=3,opaque=fixed3",
                                "-drive", "file=/dev/fdset/3,format=raw,if=ide,cache=none"]
    assert head[at + 12:at + 14] == ["-kernel", "/boot/vmlinuz-2.6-kvmU"]
    assert rt["hvparams"]["disk_type"] == "ide" and rt["legacy_hvparams"]["security_model"] == "user"


def test_2_6_balloon_and_spice_devices_keep_their_order():
    rt = read("v2_6_balloon_spice")
    cmd = rt["kvm_cmd"]
    assert cmd[cmd.index("-m") + 1] == "2048" and cmd[cmd.index("-smp") + 1] == "2"
    devs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    assert devs == ["virtio-balloon", "virtio-serial-pci", "virtserialport,chardev=spicechannel0,name=com.redhat.spice.0"]
    assert "-spice" in cmd and cmd[cmd.index("-vga") + 1] == "qxl"
    assert [d["kind"] for d in rt["fixed"]] == ["nic", "disk"]


def test_2_7_no_kvm_soundhw_and_an_old_machine_name():
    rt = read("v2_7_no_kvm_soundhw")
    cmd = rt["kvm_cmd"]
    assert "-no-kvm" not in cmd and cmd[cmd.index("-machine") + 1] == "accel=tcg"
    assert "-soundhw" not in cmd and cmd[cmd.index("-audio") + 1] == "driver=none,model=hda"
    # the rewritten -usbdevice goes before the first -device (QEMU created it before every -device)
    assert cmd[cmd.index("-smp") + 2:cmd.index("-smp") + 6] == ["-device", "usb-tablet", "-device", "virtio-balloon"]
    assert cmd[cmd.index("-M") + 1] == "pc-1.0"
    assert (rt["hvparams"]["machine_type"], rt["hvparams"]["accel"]) == ("pc", "tcg")  # kvm_cmd wins over defaults
    assert rt["hvparams"]["cpu_type"] is None and rt["legacy_hvparams"]["cpu_type"] == "qemu64"
    assert any("pc-1.0" in n for n in ganeti_read.notes(rt))


def test_3_0_chroot_without_vnc_is_dropped_anyway():
    rt = read("v3_0_chroot_without_vnc")
    assert "-chroot" not in rt["kvm_cmd"] and ["-chroot", "/var/run/ganeti/kvm-hypervisor/chroot/vm1.example.org"] in rt["ganeti"]["plumbing"]
    assert rt["legacy_hvparams"]["use_chroot"] is True


def test_empty_argument_paused_start_keymap_path_and_multiqueue():
    rt = read("v2_12_extra_paused_multiqueue")
    cmd = rt["kvm_cmd"]
    assert "" not in cmd and "-S" not in cmd and "-k" not in cmd
    assert cmd[-5:] == ["-no-hpet", "-global", "PIIX4_PM.disable_s3=1", "-net", "none"]
    assert any("empty argument" in n for n in ganeti_read.notes(rt))
    assert "virtio_net_queues=4" in fixed.unstartable(rt)


def test_cdrom_and_url_drives_stay_in_kvm_cmd_without_boot_on():
    data = raw("v2_0_three_elements")
    data[0] += ["-drive", "file=/srv/iso/x.iso,media=cdrom,format=raw,if=ide,boot=on", "-drive", "file=http://192.0.2.9/x.iso,media=cdrom"]
    cmd = read_data(data)["kvm_cmd"]
    assert "file=/srv/iso/x.iso,media=cdrom,format=raw,if=ide" in cmd and "file=http://192.0.2.9/x.iso,media=cdrom" in cmd


def test_a_drive_file_with_a_doubled_comma_is_one_path():
    data = raw("v2_0_three_elements")
    data[0][data[0].index("-drive") + 1] = "file=/srv/a,,b.img,format=raw,if=virtio"
    assert read_data(data)["fixed"][1]["path"] == "/srv/a,b.img"


def test_machine_and_accelerator_come_from_the_command_line():
    assert kvm_cmd.machine_of(["/usr/bin/kvm"]) == (None, "kvm")  # Debian's and Ganeti's kvm is QEMU with KVM
    assert kvm_cmd.machine_of(["qemu-system-x86_64"]) == (None, None)
    assert kvm_cmd.machine_of(["qemu", "-M", "pc-1.0"]) == ("pc-1.0", None)
    assert kvm_cmd.machine_of(["qemu", "-machine", "type=q35,accel=kvm:tcg"]) == ("q35", "kvm")
    assert kvm_cmd.machine_of(["kvm", "-machine", "pc", "-no-kvm"]) == ("pc", "tcg")
    assert kvm_cmd.machine_of(["qemu", "-enable-kvm", "-accel", "tcg,thread=single"]) == (None, "tcg")
