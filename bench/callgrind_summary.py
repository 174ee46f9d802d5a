"""Print a callgrind_annotate listing grouped by function.

callgrind_annotate lists code that the compiler inlined under the source
file it came from, so one Rust function shows up on several lines (for
example ptr/mod.rs:read_with and session.rs:read_with). This script adds
those lines up per function name and prints the largest entries with their
share of the program total. Unnamed code in libk5crypto (its static AES and
SHA-1 routines) is reported as one entry.

usage: callgrind_summary.py LISTING [COUNT]
"""

import collections
import re
import sys

LINE = re.compile(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$")


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: callgrind_summary.py LISTING [COUNT]")
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 20
    total = None
    costs = collections.Counter()
    with open(sys.argv[1], encoding="utf-8", errors="replace") as listing:
        for line in listing:
            match = LINE.match(line)
            if not match:
                continue
            cost = int(match.group(1).replace(",", ""))
            entry = match.group(2)
            if "PROGRAM TOTALS" in entry:
                total = cost
                continue
            obj = re.search(r"\[([^\]]*)\]$", entry)
            name = re.sub(r" \[[^\]]*\]$", "", entry)
            name = name.split(":", 1)[1] if ":" in name else name
            if name.startswith("0x") and obj:
                name = f"(unnamed code in {obj.group(1).rsplit('/', 1)[-1]})"
            costs[name] += cost
    if not total:
        raise SystemExit(f"callgrind_summary.py: no PROGRAM TOTALS line in {sys.argv[1]}")
    print(f"{total:>15,} 100.00%  total instructions")
    for name, cost in costs.most_common(count):
        print(f"{cost:>15,} {100 * cost / total:6.2f}%  {name}")


if __name__ == "__main__":
    main()
