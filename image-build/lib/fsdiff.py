#!/usr/bin/env python3
"""Helpers for image-build/inject-into-image (Python 3 standard library only).

  fsdiff.py partition IMAGE [N]          -> "N START SECTORS SECTOR_SIZE LABEL LAST" of the root partition
  fsdiff.py manifest TREE OUT.json        -> record every path's type, mode, owner, size, times
  fsdiff.py debugfs-script BEFORE.json TREE OUT.cmds
                                          -> debugfs commands that turn the filesystem the tree was
                                             dumped from into the tree as it is now (only what changed)

The point of the last one: the root filesystem of an SD-card image is dumped to a directory
(debugfs rdump), the package is installed there in a chroot, and only the difference is written
back into the ORIGINAL filesystem with `debugfs -w`. Everything the install did not touch keeps
its inode, extended attributes (file capabilities such as ping's), hard links and the
filesystem's UUID, label and features, which rebuilding it with mkfs.ext4 -d would lose.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

LINUX_TYPES = {
    "83",  # DOS: Linux
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # GPT: Linux filesystem
    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",  # GPT: Linux root (ARM-64)
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # GPT: Linux root (x86-64)
}


def partition(image: str, wanted: str | None) -> str:
    table = json.loads(subprocess.run(["sfdisk", "--json", image], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    parts = table.get("partitions", [])
    if not parts:
        raise SystemExit(f"{image}: no partitions")
    numbered = []
    for p in parts:
        digits = ""
        for ch in reversed(p["node"]):
            if not ch.isdigit():
                break
            digits = ch + digits
        numbered.append((int(digits), p))
    if wanted:
        chosen = [(n, p) for n, p in numbered if n == int(wanted)]
        if not chosen:
            raise SystemExit(f"{image}: no partition {wanted}")
    else:
        chosen = [(n, p) for n, p in numbered if str(p.get("type", "")).upper() in LINUX_TYPES]
        if not chosen:
            raise SystemExit(f"{image}: no Linux partition; name one with --partition")
        chosen = [max(chosen, key=lambda np: np[1]["size"])]
    n, p = chosen[0]
    last = all(q["start"] < p["start"] for _, q in numbered if q is not p)
    return f"{n} {p['start']} {p['size']} {sector} {table['label']} {int(last)}"


def manifest(tree: Path) -> dict[str, list]:
    entries: dict[str, list] = {}
    root = str(tree)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = "/" + os.path.relpath(full, root)
            if stat.S_ISLNK(st.st_mode):
                kind, extra = "l", os.readlink(full)
            elif stat.S_ISDIR(st.st_mode):
                kind, extra = "d", ""
            elif stat.S_ISREG(st.st_mode):
                kind, extra = "f", ""
            else:
                kind, extra = "o", ""
            entries[rel] = [kind, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, extra]
    return entries


def quote(path: str) -> str:
    if any(c in path for c in '"\n\\'):
        raise SystemExit(f"cannot write {path!r} with debugfs (quote, backslash or newline in the name)")
    return f'"{path}"'


def debugfs_script(before: dict[str, list], tree: Path) -> tuple[list[str], dict[str, int]]:
    after = manifest(tree)
    cmds: list[str] = []
    counts = {"added": 0, "changed": 0, "removed": 0, "metadata": 0, "skipped": 0}

    def set_meta(path: str, e: list, with_mode: bool = True) -> None:
        q = quote(path)
        if with_mode:
            cmds.append(f"sif {q} mode 0{e[1]:o}")
        cmds.append(f"sif {q} uid {e[2]}")
        cmds.append(f"sif {q} gid {e[3]}")
        cmds.append(f"sif {q} mtime @{e[5] // 1_000_000_000}")

    def add(path: str, e: list) -> None:
        kind = e[0]
        if kind == "d":
            cmds.append(f"mkdir {quote(path)}")
            set_meta(path, e)
        elif kind == "f":
            cmds.append(f"write {quote(str(tree) + path)} {quote(path)}")
            set_meta(path, e)
        elif kind == "l":
            cmds.append(f"symlink {quote(path)} {quote(e[7])}")
            set_meta(path, e, with_mode=False)
        else:
            print(f"fsdiff: skipping special file {path} (not a file, directory or symlink)", file=sys.stderr)
            counts["skipped"] += 1
            return

    def remove(path: str, e: list) -> None:
        cmds.append(f"{'rmdir' if e[0] == 'd' else 'rm'} {quote(path)}")

    # removals, deepest first
    for path in sorted(set(before) - set(after), key=lambda p: p.count("/"), reverse=True):
        if before[path][0] == "o":
            continue  # rdump does not dump special files, so they never "disappear"
        remove(path, before[path])
        counts["removed"] += 1
    # additions and changes, parents first
    for path in sorted(after, key=lambda p: (p.count("/"), p)):
        e = after[path]
        b = before.get(path)
        if b is None:
            add(path, e)
            counts["added"] += 1
            continue
        if b[0] != e[0]:
            if b[0] == "d":
                raise SystemExit(f"{path}: a directory became a {e[0]}; not supported")
            remove(path, b)
            add(path, e)
            counts["changed"] += 1
            continue
        content_changed = (e[0] == "f" and (e[4] != b[4] or e[5] != b[5] or e[6] != b[6])) or \
                          (e[0] == "l" and e[7] != b[7])
        if content_changed:
            remove(path, b)
            add(path, e)
            counts["changed"] += 1
        elif e[1:4] != b[1:4]:
            set_meta(path, e, with_mode=e[0] != "l")
            counts["metadata"] += 1
    return cmds, counts


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "partition":
        print(partition(argv[1], argv[2] if len(argv) > 2 else None))
    elif len(argv) == 3 and argv[0] == "manifest":
        Path(argv[2]).write_text(json.dumps(manifest(Path(argv[1]))))
    elif len(argv) == 4 and argv[0] == "debugfs-script":
        before = json.loads(Path(argv[1]).read_text())
        cmds, counts = debugfs_script(before, Path(argv[2]).resolve())
        Path(argv[3]).write_text("\n".join(cmds) + "\n")
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
