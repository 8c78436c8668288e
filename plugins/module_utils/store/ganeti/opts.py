# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU's option text as Ganeti wrote it: ``key=value`` lists (QemuOpts, ``,,`` is a comma) and a command
line cut into option groups.

Kept apart because every other part of the Ganeti codec reads ``kvm_cmd``
through it (the rewrite, the layout reader, the export) and it knows
nothing about Ganeti: only which QEMU options take no argument.
"""

from __future__ import annotations

# QEMU options that take no argument (everything else takes exactly one).
_FLAGS = frozenset({
    "daemonize", "S", "usb", "nographic", "no-acpi", "no-reboot", "no-shutdown", "enable-kvm", "disable-kvm",
    "no-kvm", "localtime", "mem-prealloc", "nodefaults", "no-hpet", "snapshot", "full-screen", "no-user-config",
    "no-kvm-irqchip", "no-kvm-pit", "no-kvm-pit-reinjection", "enable-nesting", "no-fd-bootchk", "no-frame",
    "alt-grab", "ctrl-grab", "no-quit", "win2k-hack", "rtc-td-hack", "portrait", "nodefconfig", "enable-fips",
    "only-migratable", "s", "semihosting", "no-graphic", "sdl", "curses", "preconfig", "xen-attach", "h", "help",
    "version", "old-param", "enable-sync-profile",
})


def split_opts(text: str) -> list[str]:
    """``a,b=c,,d`` -> ``["a", "b=c,d"]`` (QEMU's ``key=value`` lists; ``,,`` is a comma)."""
    parts: list[str] = []
    cur: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "," and text[pos + 1:pos + 2] == ",":
            cur.append(",")
            pos += 2
            continue
        if char == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(char)
        pos += 1
    parts.append("".join(cur))
    return parts


def join_opts(parts: list[str]) -> str:
    """The inverse of ``split_opts``: every comma inside a part doubled."""
    return ",".join(part.replace(",", ",,") for part in parts)


def kv(part: str) -> tuple[str, str | None]:
    """``key=value`` -> (key, value); a bare word -> (word, None)."""
    key, sep, value = part.partition("=")
    return (key, value) if sep else (key, None)


def opt_name(token: str) -> str | None:
    """The option a token names (``-m``, ``--m`` -> ``m``), None for a non-option."""
    if len(token) > 1 and token.startswith("-"):
        return token.lstrip("-") or None
    return None


def groups_of(argv: list[str]) -> list[list[str]]:
    """``argv[1:]`` as option groups ``[option, argument]``, ``[flag]`` or ``[positional]``.

    Fail closed: an option this parser does not know followed by something
    that looks like an option is taken as a flag, so an unknown flag can
    never swallow the option after it (``-sdl -incoming ...`` keeps
    ``-incoming`` an option, dropped as plumbing).
    """
    groups: list[list[str]] = []
    pos = 1
    while pos < len(argv):
        token = argv[pos]
        name = opt_name(token)
        follows = argv[pos + 1] if pos + 1 < len(argv) else ""
        looks_like_option = len(follows) > 1 and follows[0] == "-" and follows[1].isalpha()
        if name is not None and name not in _FLAGS and pos + 1 < len(argv) and not looks_like_option:
            groups.append([token, argv[pos + 1]])
            pos += 2
        else:
            groups.append([token])
            pos += 1
    return groups


def find(groups: list[list[str]], *names: str) -> list[list[str]]:
    """The groups of the options ``names``, in order."""
    return [g for g in groups if opt_name(g[0]) in names]


def argv_value(argv: list[str], *options: str) -> str | None:
    """The argument of the first of ``options`` in ``argv``, None when none is there."""
    for group in groups_of(argv):
        if len(group) > 1 and opt_name(group[0]) in options:
            return group[1]
    return None


def first_field(text: str | None, key: str) -> str | None:
    """``key``'s value in an option argument, or its leading bare word (QEMU's implied first key)."""
    if text is None:
        return None
    for pos, part in enumerate(split_opts(text)):
        name, value = kv(part)
        if value is None and pos == 0:
            return name
        if name == key:
            return value
    return None
