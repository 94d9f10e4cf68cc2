#!/usr/bin/env python3
"""scripts/lib/bench_lab_report.py RESULTS — the tables of scripts/bench-lab (stdlib only).

RESULTS has one line per measurement, `ROUND MODE LOAD key=value ...` (bulk4/bulk6: gbps,
conns: cps, udp: kpps, rr: p50, p99 in µs and tps), and optional `perf ROUND MODE LOAD
key=value ...` lines (shares of statewall's samples). Ratios are taken within a round (a
mode against the baseline measured in the same round, minutes apart), then summarised over
the rounds as median and min-max, so a slow round moves both sides of its ratio.
"""

import math
import statistics
import sys

UNITS = {"bulk4": "Gbit/s", "bulk6": "Gbit/s", "conns": "conn/s", "udp": "kpps", "rr": "µs"}
METRIC = {"bulk4": "gbps", "bulk6": "gbps", "conns": "cps", "udp": "kpps", "rr": "p99"}
HIGHER_IS_BETTER = {"gbps": True, "cps": True, "kpps": True, "p50": False, "p99": False}

# (label, load, metric, mode, baseline, kind, target): kind "ratio" is mode/baseline, kind
# "added" is (mode - forward) / (baseline - forward), the latency the gateway adds.
GOALS = [
    ("bulk TCP v4 vs kernel conntrack", "bulk4", "gbps", "sw1", "conntrack", "ratio", (">=", 1.0)),
    ("bulk TCP v6 vs kernel conntrack", "bulk6", "gbps", "sw1", "conntrack", "ratio", (">=", 1.0)),
    ("64-byte UDP, one flow, vs kernel conntrack", "udp", "kpps", "sw1", "conntrack", "ratio", (">=", 0.9)),
    ("new connections/s, 1 queue, vs accept-all", "conns", "cps", "sw1", "nfq-accept", "ratio", (">=", 1.0)),
    ("new connections/s, 2 queues, vs accept-all", "conns", "cps", "sw2", "nfq-accept", "ratio", (">=", 1.2)),
    ("added p99 latency vs accept-all's", "rr", "p99", "sw1", "nfq-accept", "added", ("<=", 1.1)),
]


def parse(path):
    runs, perf = {}, {}
    for line in open(path):
        f = line.split()
        if not f:
            continue
        target = runs
        if f[0] == "perf":
            target, f = perf, f[1:]
        if len(f) < 3:
            continue
        rnd, mode, load = int(f[0]), f[1], f[2]
        kv = {}
        for x in f[3:]:
            k, _, v = x.partition("=")
            try:
                kv[k] = float(v)
            except ValueError:
                pass
        target[(rnd, mode, load)] = kv
    return runs, perf


def value(runs, rnd, mode, load, metric):
    v = runs.get((rnd, mode, load), {}).get(metric, float("nan"))
    return v if not math.isnan(v) else None


def summary(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs), len(xs)


def fmt(s, digits=2):
    if s is None:
        return "-"
    m, lo, hi, n = s
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def fmt_abs(s):
    if s is None:
        return "failed", "-", "0"
    m, lo, hi, n = s
    return f"{m:g}", f"{lo:g}-{hi:g}", str(n)


def ratios(runs, rounds, mode, base, load, metric):
    out = []
    for r in rounds:
        a, b = value(runs, r, mode, load, metric), value(runs, r, base, load, metric)
        if a is not None and b:
            out.append(a / b)
    return out


def added_ratios(runs, rounds, mode, base, load, metric):
    out = []
    for r in rounds:
        a = value(runs, r, mode, load, metric)
        b = value(runs, r, base, load, metric)
        f = value(runs, r, "forward", load, metric)
        if a is not None and b is not None and f is not None and b - f > 0:
            out.append((a - f) / (b - f))
    return out


def main():
    path, modes, loads = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
    runs, perf = parse(path)
    rounds = sorted({r for r, _, _ in runs})
    print()
    print("Absolute figures (median, min-max over the rounds); never compare them across runs"
          " or machines, only the ratios below.")
    print()
    print("| load | mode | median | spread (min-max) | runs |")
    print("|---|---|---|---|---|")
    for l in loads:
        metrics = ["p50", "p99"] if l == "rr" else [METRIC[l]]
        for m in modes:
            for metric in metrics:
                s = summary([value(runs, r, m, l, metric) for r in rounds])
                med, spread, n = fmt_abs(s)
                name = f"{l} {metric}" if l == "rr" else l
                print(f"| {name} ({UNITS[l]}) | {m} | {med} | {spread} | {n} |")
    print()
    print("Ratios within each round, median [min-max] over the rounds (throughput: higher is"
          " better; latency: lower is better; 'added' is the latency above plain forwarding,"
          " (mode - forward) / (baseline - forward)).")
    print()
    print("| load | mode | vs kernel conntrack | vs accept-all (nfq-accept) | vs forwarding |")
    print("|---|---|---|---|---|")
    for l in loads:
        metric = METRIC[l]
        for m in modes:
            if m == "forward":
                continue
            cells = [fmt(summary(ratios(runs, rounds, m, b, l, metric))) for b in
                     ("conntrack", "nfq-accept", "forward")]
            if l == "rr":
                added = summary(added_ratios(runs, rounds, m, "nfq-accept", l, metric))
                cells[1] += f"; added {fmt(added)}"
            name = f"{l} {metric}" if l == "rr" else l
            print(f"| {name} | {m} | " + " | ".join(cells) + " |")
    print()
    print("Goals (issue 12 §3), ratios in this run, median [min-max] over the rounds:")
    print()
    print("| goal | measured | target | met (median) |")
    print("|---|---|---|---|")
    for label, load, metric, mode, base, kind, (op, target) in GOALS:
        if load not in loads or mode not in modes or base not in modes:
            continue
        if kind == "added":
            if "forward" not in modes:
                continue
            s = summary(added_ratios(runs, rounds, mode, base, load, metric))
        else:
            s = summary(ratios(runs, rounds, mode, base, load, metric))
        if s is None:
            met = "no data"
        else:
            met = "yes" if (s[0] >= target if op == ">=" else s[0] <= target) else "NO"
        print(f"| {label} ({mode}/{base}) | {fmt(s)} | {op} {target} | {met} |")
    if perf:
        print()
        print("perf: share of statewall's cpu-clock samples (%, all threads, median over the"
              " rounds): under the receive system call, under sendto (verdicts) and of that the"
              " packet's re-injection (nfqnl_reinject), in Engine::process, in user space.")
        print()
        print("| load | mode | recv | sendto | nfqnl_reinject | Engine::process | user |")
        print("|---|---|---|---|---|---|---|")
        for l in loads:
            for m in modes:
                kvs = [kv for (r, mm, ll), kv in perf.items() if mm == m and ll == l]
                if not kvs:
                    continue
                g = lambda k: statistics.median([kv.get(k, float("nan")) for kv in kvs])
                print(f"| {l} | {m} | {g('recv'):.0f} | {g('send'):.0f} | {g('reinject'):.0f} "
                      f"| {g('engine'):.0f} | {g('user'):.0f} |")


if __name__ == "__main__":
    main()
