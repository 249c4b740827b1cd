"""report: the benchmark's figures as a table on stdout, as JSON, and as a
PNG chart drawn by gnuplot.

Input is the results dict bench.py builds (see bench.py, "results"); every
workload row has name, req_s, p50_ms, p99_ms, errors and ratio (req/s over
the proxy ceiling of the same sitting).
Not here: measuring (wrkrun.py), deciding what runs (bench.py).
"""

import json
import os
import subprocess

from wrkrun import LoadError, tool


def _ms(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)


def _ratio(v):
    return "-" if v is None else "%.3f" % v


def _us(v):
    return "-" if v is None else "%.0f" % v


def _grid(head, lines):
    """Columns padded to width: the first left-aligned, the rest right."""
    widths = [max([len(head[i])] + [len(l[i]) for l in lines]) for i in range(len(head))]

    def fmt(cols):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(cols))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(l) for l in lines])


def compare_table(medians):
    """One line per stack and workload: req/s, p99 and CPU per request
    (medians over the rounds), and for snaptext's rows the CPU per request
    over its own floor row's."""
    floor = {m["stack"]: m["cpu_us_per_req"] for m in medians if m["workload"] == "floor"}
    head = ("stack", "workload", "req/s", "p99 ms", "CPU us/req", "x floor CPU",
            "req/s each round")
    lines = []
    for m in medians:
        f = floor.get(m["stack"])
        lines.append((m["stack"], m["workload"], "%.0f" % m["req_s"], _ms(m["p99_ms"]),
                      _us(m["cpu_us_per_req"]),
                      "%.2f" % (m["cpu_us_per_req"] / f) if f and m["cpu_us_per_req"] else "-",
                      " / ".join("%.0f" % v for v in m["req_s_rounds"])))
    return _grid(head, lines)


def compare_cpu_table(medians):
    """CPU us per request of each kind of process (instances and workers
    added up), medians over the rounds."""
    groups = []
    for m in medians:
        for g in m["cpu_us_per_req_by_service"]:
            if g not in groups:
                groups.append(g)
    head = ["stack", "workload"] + groups + ["total"]
    lines = [[m["stack"], m["workload"]] +
             [_us(m["cpu_us_per_req_by_service"].get(g)) for g in groups] +
             [_us(m["cpu_us_per_req"])] for m in medians]
    return _grid(head, lines)


def ratio_table(ratios):
    """snaptext's req/s over each peer's per workload, the CPU ratio beside."""
    keys = []
    for r in ratios:
        if (r["snaptext"], r["peer"]) not in keys:
            keys.append((r["snaptext"], r["peer"]))
    head = ("snaptext", "vs peer", "send", "read", "mixed")
    lines = []
    for snap, peer in keys:
        cells = []
        for w in ("send", "read", "mixed"):
            r = next((x for x in ratios if x["snaptext"] == snap and x["peer"] == peer and
                      x["workload"] == w), None)
            cells.append("-" if r is None else "%.2fx (%s)" % (
                r["req_s_ratio"], "-" if r["cpu_ratio"] is None else "%.2f" % r["cpu_ratio"]))
        lines.append((snap, peer) + tuple(cells))
    return _grid(head, lines)


def table(rows):
    """The main table, one line per workload, as a string."""
    head = ("workload", "req/s", "p50 ms", "p99 ms", "errors", "vs ceiling", "CPU us/req",
            "x floor CPU")
    floor = next((r.get("cpu_us_per_req") for r in rows if r["kind"] == "floor"), None)

    def over_floor(r):
        cpu = r.get("cpu_us_per_req")
        return "%.2f" % (cpu / floor) if cpu and floor and r["kind"] == "snaptext" else "-"
    lines = [(r["name"], "%.0f" % r["req_s"], _ms(r["p50_ms"]), _ms(r["p99_ms"]),
              str(r["errors"]), _ratio(r.get("ratio")), _us(r.get("cpu_us_per_req")),
              over_floor(r))
             for r in rows]
    widths = [max(len(head[i]), *(len(l[i]) for l in lines)) if lines else len(head[i])
              for i in range(len(head))]

    def fmt(cols):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(cols))
    out = [fmt(head), "  ".join("-" * w for w in widths)]
    out += [fmt(l) for l in lines]
    return "\n".join(out)


def cpu_table(rows):
    """CPU per service during each workload, in % of one core (2 cores = 200)."""
    services = []
    for r in rows:
        for s in r.get("machine", {}).get("cpu_pct_by_service", {}):
            if s not in services:
                services.append(s)
    head = ["workload"] + services + ["load gen", "machine busy %"]
    lines = []
    for r in rows:
        m = r.get("machine") or {}
        by = m.get("cpu_pct_by_service", {})
        lines.append([r["name"]] + ["%.0f" % by[s] if s in by else "-" for s in services] +
                     ["%.0f" % m.get("load_generator_cpu_pct", 0),
                      "%.0f" % m.get("machine_busy_pct", 0)])
    widths = [max(len(head[i]), *(len(l[i]) for l in lines)) for i in range(len(head))]
    fmt = lambda cols: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                                 for i, c in enumerate(cols))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(l) for l in lines])


def rss_table(rss):
    """rss: {stack: {process: {"idle": kB, "end": kB}}}."""
    lines = []
    for stack, procs in rss.items():
        for name, v in procs.items():
            lines.append(["%s/%s" % (stack, name), str(v.get("idle", "-")),
                          str(v.get("end", "-")), str(v.get("peak", "-"))])
    head = ["process", "idle kB", "end of load kB", "peak kB"]
    widths = [max(len(head[i]), *(len(l[i]) for l in lines)) if lines else len(head[i])
              for i in range(len(head))]
    fmt = lambda cols: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                                 for i, c in enumerate(cols))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(l) for l in lines])


def write_json(path, results):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


# Bar colours by kind of row: the ceilings, and the service floor (HAProxy
# and a service, no store work), stand apart from snaptext's own.
COLOURS = {"ceiling": 0x777777, "store": 0xbbbbbb, "floor": 0x88aacc, "snaptext": 0x4477aa}


def _label(name):
    return name.replace('"', "'")


def write_chart(png_path, rows):
    """Two panels: throughput (log scale, the ceiling first) and p99 per
    workload, each bar coloured by its kind (COLOURS). Writes <png>.dat
    beside the PNG for gnuplot."""
    dat = os.path.splitext(png_path)[0] + ".dat"
    with open(dat, "w") as f:
        f.write("# index workload req_s p99_ms colour\n")
        for i, r in enumerate(rows):
            f.write('%d "%s" %.1f %s %d\n' % (
                i, _label(r["name"]), r["req_s"],
                "%.3f" % r["p99_ms"] if r["p99_ms"] is not None else "NaN",
                COLOURS.get(r.get("kind"), 0x4477aa)))
    script = "\n".join([
        "set terminal pngcairo size 1200,900 font 'sans,10'",
        "set output '%s'" % png_path.replace("'", ""),
        "set multiplot layout 2,1 title 'snaptext benchmark, one sitting (grey: HAProxy answering "
        "itself; light grey: redis-benchmark; light blue: HAProxy -> ingest /healthz, no store "
        "work)'",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.6",
        "set grid ytics",
        "set xtics rotate by -30 nomirror",
        "set yrange [1:*]",
        "set logscale y",
        "set ylabel 'requests/s (log)'",
        "plot '%s' using 1:3:5:xtic(2) with boxes lc rgb variable notitle, "
        "'' using 1:3:(sprintf('%%.0f', $3)) with labels offset 0,0.7 notitle" % dat,
        "unset logscale y",
        "set yrange [0:*]",
        "set ylabel 'p99 latency (ms)'",
        "plot '%s' using 1:4:5:xtic(2) with boxes lc rgb variable notitle, "
        "'' using 1:4:(sprintf('%%.1f', $4)) with labels offset 0,0.7 notitle" % dat,
        "unset multiplot",
        ""])
    done = subprocess.run([tool("gnuplot")], input=script, capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0 or not os.path.exists(png_path):
        raise LoadError("gnuplot failed: %s" % done.stderr[-2000:])
    return png_path
