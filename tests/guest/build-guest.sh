#!/usr/bin/env bash
# Build the test guest from Debian packages: a distribution kernel plus a tiny
# busybox initramfs that reports the disks and NICs it sees on the serial
# console. The result is cached outside the repository (default
# /var/cache/kvmhv-qemu/guest, or $KVMHV_GUEST_DIR); nothing is committed.
# Directories are 0755 and files 0644: QEMU may run as an unprivileged system
# user that must read the kernel and the initrd.
# The generic kernel is used, not the cloud one: only it has the drivers for
# QEMU's lsi53c895a (sym53c8xx), megasas (megaraid_sas) and the emulated NICs.
# Prints the guest directory (vmlinuz, initrd.img) as its last line.
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
out=${KVMHV_GUEST_DIR:-/var/cache/kvmhv-qemu/guest}
stamp_want=$(cat "$0" "$here/init" "$here/modules.txt" | sha256sum | cut -c1-16)

if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp_want" ] \
   && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  # A cache made by an older script may be private: open it up if it is ours.
  chmod 0755 "$out" 2>/dev/null || true
  chmod 0644 "$out/vmlinuz" "$out/initrd.img" 2>/dev/null || true
  echo "$out"
  exit 0
fi

if ! mkdir -p "$out" 2>/dev/null || [ ! -w "$out" ]; then
  echo "build-guest: cannot write $out (set KVMHV_GUEST_DIR)" >&2
  exit 1
fi
chmod 0755 "$out"

need_apt=()
command -v cpio >/dev/null || need_apt+=(cpio)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$kpkg" ] || { echo "build-guest: cannot find the linux-image-amd64 kernel package" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
(cd "$work" && apt-get download -qq "$kpkg" 2>/dev/null) || (cd "$work" && apt-get download "$kpkg")
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/pkg"
kver=$(ls "$work/pkg/lib/modules")
moddir="$work/pkg/lib/modules/$kver"

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules,etc}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

# The wanted modules and everything they depend on, in load order.
python3 - "$moddir" "$here/modules.txt" "$root/lib/modules" <<'PY'
import os, re, shutil, sys
moddir, wanted_file, dest = sys.argv[1:]
paths = {}
for top, _, files in os.walk(os.path.join(moddir, "kernel")):
    for f in files:
        if f.endswith(".ko"):
            paths[f[:-3].replace("-", "_")] = os.path.join(top, f)
def deps(name):
    data = open(paths[name], "rb").read()
    m = re.search(rb"depends=([^\x00]*)", data)
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []
order, seen = [], set()
def visit(name):
    if name in seen or name not in paths:
        return
    seen.add(name)
    for dep in deps(name):
        visit(dep)
    order.append(name)
for line in open(wanted_file):
    name = line.split("#")[0].strip().replace("-", "_")
    if name:
        visit(name)
with open(os.path.join(dest, "order"), "w") as out:
    for name in order:
        shutil.copy(paths[name], os.path.join(dest, name + ".ko"))
        out.write(name + "\n")
PY

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img.tmp"
cp "$work/pkg/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
chmod 0644 "$out/initrd.img.tmp" "$out/vmlinuz.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$kver" > "$out/kernel-version"
echo "$stamp_want" > "$out/stamp"
echo "$out"
