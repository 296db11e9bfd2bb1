#!/usr/bin/env python3
"""Where a running daemon's mapped segment pages are: resident bytes per segment and per section.

    python3 bench/residency.py PID [--json FILE]

Reads /proc/PID/smaps for the mappings of `*.seg` files, /proc/PID/pagemap for which of their pages are
present in the process (needs root: the present bit is readable, the frame numbers are not needed), and
each segment's section table (storage-format.md 8.3: `section_count` u32 at 28, `table_offset` u64 at 32,
entries of kind u16, flags u16, crc32c u32, offset u64, len u64) to attribute the pages to sections.
Section kinds are named as storage-format.md names them. A read-only diagnostic: it never writes.
"""
import json
import os
import struct
import sys

KINDS = {1: "ids", 2: "docs", 3: "vectors", 4: "vector_absent", 5: "doc_blocks", 16: "ann", 17: "text",
         18: "sparse", 19: "attr", 20: "graph", 21: "cold_ivf", 22: "range_crcs", 23: "named", 24: "named_cold",
         30: "muvera"}
PAGE = os.sysconf("SC_PAGE_SIZE")


def seg_mappings(pid):
    """(start, end, file offset, path) of every mapping of a .seg file."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip().endswith(".seg"):
                a, b = (int(x, 16) for x in parts[0].split("-"))
                out.append((a, b, int(parts[2], 16), parts[5].strip()))
    return out


def sections(path):
    """[(kind, offset, len)] of a segment file, or [] if it cannot be read (e.g. deleted)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            n = struct.unpack_from("<I", head, 28)[0]
            table = struct.unpack_from("<Q", head, 32)[0]
            f.seek(table)
            raw = f.read(24 * n)
    except OSError:
        return []
    return [(k, o, l) for k, _, _, o, l in (struct.unpack_from("<HHIQQ", raw, 24 * i) for i in range(n))]


def present_pages(pid, start, end):
    """File-relative page indexes (from the mapping's start) present in the process."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        raw = f.read((end - start) // PAGE * 8)
    entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
    return [i for i, e in enumerate(entries) if e >> 63]


def residency(pid):
    per_file = {}
    for start, end, off, path in seg_mappings(pid):
        secs = sections(path.replace(" (deleted)", ""))
        rec = per_file.setdefault(path, {"resident_bytes": 0, "sections": {}})
        for i in present_pages(pid, start, end):
            at = off + i * PAGE
            rec["resident_bytes"] += PAGE
            name = "header/table"
            for k, o, l in secs:
                if o <= at < o + l:
                    name = KINDS.get(k, f"kind{k}")
                    break
            rec["sections"][name] = rec["sections"].get(name, 0) + PAGE
        rec["section_bytes"] = {KINDS.get(k, f"kind{k}"): l for k, _, l in secs}
    return per_file


def main():
    pid = int(sys.argv[1])
    r = residency(pid)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(r, f, indent=1)
    total = sum(v["resident_bytes"] for v in r.values())
    by_section = {}
    for v in r.values():
        for s, b in v["sections"].items():
            by_section[s] = by_section.get(s, 0) + b
    print(f"{len(r)} segment mappings, {total / 1e6:.1f} MB resident")
    print("by section: " + ", ".join(f"{s} {b / 1e6:.1f} MB" for s, b in sorted(by_section.items(), key=lambda x: -x[1])))
    for path, v in sorted(r.items(), key=lambda x: -x[1]["resident_bytes"]):
        secs = ", ".join(f"{s} {b / 1e6:.1f}/{v['section_bytes'].get(s, 0) / 1e6:.1f}"
                         for s, b in sorted(v["sections"].items(), key=lambda x: -x[1]))
        print(f"  {v['resident_bytes'] / 1e6:8.1f} MB  {os.path.basename(os.path.dirname(path))[:12]}  {secs}")


if __name__ == "__main__":
    main()
