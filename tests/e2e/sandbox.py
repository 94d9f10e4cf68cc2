#!/usr/bin/python3
"""Run a command under the system call filter of a systemd unit file, as systemd would apply it
(PID 1 here is not systemd, so nothing else applies the unit's filter).

Usage:
  sandbox.py UNIT --print                 print the allowed system calls, one a line
  sandbox.py UNIT -- COMMAND [ARGS...]    exec COMMAND under the unit's filter

Read from UNIT: every `SystemCallFilter=` line (the first without `~` starts an allow list,
to which systemd adds @default; a `~` line removes its calls from the list; an empty one
resets), `SystemCallErrorNumber=` (the errno of a refused call; without it, the process is
killed) and `SystemCallArchitectures=native` (the filter covers only the native ABI; calls of
another ABI kill the process). The groups (@system-service, @privileged, ...) are those of
the installed systemd, expanded by `systemd-analyze syscall-filter`. Names libseccomp does not
know on this architecture are skipped, as systemd skips them.

Run it after the privileges are dropped (e.g. after `setpriv`): like systemd, the filter comes
last, so the calls that change user or capabilities may be refused by it. It needs
no_new_privs (libseccomp sets it) and python3-seccomp (Debian).
"""

import errno
import os
import subprocess
import sys

import seccomp


def groups():
    """{"@name": [members]} from `systemd-analyze syscall-filter`."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                         capture_output=True, text=True).stdout
    found, current = {}, None
    for line in out.splitlines():
        item = line.strip()
        if not item or item.startswith("#"):
            if not item:
                current = None
            continue
        if line.startswith("@"):
            current = found.setdefault(item, [])
        elif current is not None:
            current.append(item)
    return found


def expand(names, table):
    calls = set()
    for name in names:
        if name.startswith("@"):
            if name not in table:
                sys.exit(f"sandbox: unknown system call group {name}")
            calls |= expand(table[name], table)
        else:
            calls.add(name)
    return calls


def unit_filter(path):
    """(allowed calls, errno or None, native only) from the unit file's [Service] lines."""
    table = groups()
    allow, errno_name, native = None, None, False
    for raw in open(path):
        line = raw.strip()
        key, sep, value = line.partition("=")
        if not sep or line.startswith(("#", ";")):
            continue
        value = value.strip()
        if key == "SystemCallFilter":
            if not value:
                allow = None
                continue
            deny = value.startswith("~")
            names = value.lstrip("~").split()
            if allow is None:
                if deny:
                    sys.exit("sandbox: a deny-list-only filter is not supported")
                allow = expand(["@default"], table)
            if deny:
                allow -= expand(names, table)
            else:
                allow |= expand(names, table)
        elif key == "SystemCallErrorNumber":
            errno_name = value or None
        elif key == "SystemCallArchitectures":
            native = value == "native"
    if allow is None:
        sys.exit(f"sandbox: {path} has no SystemCallFilter=")
    if not native:
        sys.exit(f"sandbox: {path}: only SystemCallArchitectures=native is supported")
    code = getattr(errno, errno_name) if errno_name else None
    return allow, code


def main(argv):
    if len(argv) < 2 or argv[1] not in ("--print", "--"):
        sys.stderr.write(__doc__)
        return 2
    allow, code = unit_filter(argv[0])
    if argv[1] == "--print":
        print("\n".join(sorted(allow)))
        return 0
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    refuse = seccomp.ERRNO(code) if code is not None else seccomp.KILL_PROCESS
    # Only the native architecture is in a new filter: calls of any other ABI hit the
    # bad-architecture action, which kills (systemd: SystemCallArchitectures=native).
    f = seccomp.SyscallFilter(defaction=refuse)
    for name in sorted(allow):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # not a system call of this architecture
    f.load()
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
