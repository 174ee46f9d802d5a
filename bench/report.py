"""Print the benchmark table of bench/run from its results file.

The results file has one sample per line: FIGURE SIDE VALUE, separated by
tabs, where SIDE is "pggssenc" or "reference" (libpq, or the raw
gss_wrap/gss_unwrap loop for the framing figure). The meta file has
KEY=VALUE lines that bench/run writes. Each figure's value is the median of
its samples; the ratio is pggssenc's median over the reference median.
"""

import statistics
import sys
from collections import defaultdict

# Figure id, label (with {placeholders} from the meta file), reference
# name, target ratio comparison and target ratio. A comparison of None
# means that the figure has no target.
FIGURES = [
    ("copy_out", "1. COPY OUT throughput, {copy_megabytes} MB of COPY text (MB/s)", "libpq", ">=", 1.0),
    ("copy_in", "2. COPY IN throughput, the same {copy_megabytes} MB (MB/s)", "libpq", ">=", 1.0),
    ("cpu_in_per_gb", "2b. Client CPU (user+sys) per GB sent by COPY IN (s/GB)", "libpq", None, None),
    ("connect_rate", "3. Connection rate, {connect_count} in sequence (connections/s)", "libpq", ">=", 1.0),
    ("idle_memory", "4. Client RSS per idle encrypted connection, {idle_count} open (KiB)", "libpq", "<=", 1.0),
    ("cpu_per_gb", "5. Client CPU (user+sys) per GB received by COPY OUT (s/GB)", "libpq", None, None),
    ("framing", "6. In-process framing, {packet_size}-byte packets (MB of plaintext per CPU second)", "raw gss_wrap/gss_unwrap loop", ">=", 0.95),
    ("framing_wall", "6b. The same runs, wall clock (MB/s)", "raw gss_wrap/gss_unwrap loop", None, None),
]


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as meta_file:
        for line in meta_file:
            line = line.strip()
            if line:
                key, _, value = line.partition("=")
                meta[key] = value
    return meta


def read_samples(path):
    samples = defaultdict(lambda: defaultdict(list))
    with open(path, encoding="utf-8") as results_file:
        for number, line in enumerate(results_file, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise SystemExit(f"report.py: line {number} of {path} has {len(fields)} fields, expected 3")
            figure, side, value = fields
            samples[figure][side].append(float(value))
    return samples


def format_value(value):
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(ratio, comparison, target):
    if comparison is None:
        return "no target", ""
    met = ratio >= target if comparison == ">=" else ratio <= target
    symbol = "≥" if comparison == ">=" else "≤"
    return f"{symbol} {target:.2f}×", "met" if met else "NOT met"


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: report.py RESULTS META")
    samples = read_samples(sys.argv[1])
    meta = read_meta(sys.argv[2])

    print(
        f"pggssenc benchmarks, {meta.get('date', '?')}, source {meta.get('source', '?')}, "
        f"medians of {meta.get('runs', '?')} alternating runs each"
    )
    print()
    print("| Figure | pggssenc | libpq or raw loop | ratio | target | status |")
    print("|---|---:|---:|---:|---|---|")
    details = []
    missing = []
    for figure, label, reference_name, comparison, target in FIGURES:
        ours = samples[figure]["pggssenc"]
        theirs = samples[figure]["reference"]
        if not ours or not theirs:
            missing.append(figure)
            continue
        ours_median = statistics.median(ours)
        theirs_median = statistics.median(theirs)
        ratio = ours_median / theirs_median if theirs_median else float("nan")
        target_text, status = verdict(ratio, comparison, target)
        title = label.format(**meta)
        print(
            f"| {title} | {format_value(ours_median)} | {format_value(theirs_median)} "
            f"| {ratio:.2f}× | {target_text} | {status} |"
        )
        details.append(
            f"{figure}: pggssenc {' '.join(format_value(v) for v in ours)}; "
            f"{reference_name} {' '.join(format_value(v) for v in theirs)}"
        )
    print()
    print("Ratio = pggssenc / libpq (figures 1 to 5) or pggssenc / raw loop (figures 6 and 6b).")
    for note in meta.get("notes", "").split("|"):
        if note:
            print(f"Note: {note}")
    print()
    print("Samples in run order:")
    for line in details:
        print(f"  {line}")
    if missing:
        raise SystemExit(f"report.py: no samples for {', '.join(missing)}")


if __name__ == "__main__":
    main()
