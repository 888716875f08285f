"""The report of one run of scripts/bench-pipeline-tasks: per stage, its tasks' wall and CPU
seconds and peak memory (from `/usr/bin/time -v -o STAGE-I.time` files), object store
traffic (from the tasks' done markers and summary.json), and the components stage's peak
memory per million duplicate pairs (from its log). Prints a table and writes report.json.

    python3 bench/tasks_report.py LABEL RUN_DIR
"""

import glob
import json
import os
import re
import sys
from collections import defaultdict

STAGES = ["one-process", "clean", "pairs", "ship", "check", "components", "survivors", "finish"]


def time_log(path):
    text = open(path).read()

    def field(name):
        m = re.search(r"^\s*" + re.escape(name) + r".*: (\S+)$", text, re.M)
        if not m:
            sys.exit(f"{path}: no '{name}' line")
        return m.group(1)

    wall = 0.0
    for part in field("Elapsed (wall clock) time").split(":"):
        wall = wall * 60 + float(part)
    cpu = float(field("User time")) + float(field("System time"))
    return wall, cpu, int(field("Maximum resident set size")) / 1024


def first_existing(*paths):
    return next((p for p in paths if os.path.exists(p)), None)


def main():
    label, run_dir = sys.argv[1:3]
    summary_path = first_existing(f"{run_dir}/summary.json", f"{run_dir}/out/summary.json")
    if summary_path is None:
        sys.exit(f"{run_dir}: no summary.json")
    summary = json.load(open(summary_path))
    input_mb = summary["input_bytes"] / 1e6
    stages = defaultdict(lambda: {"tasks": 0, "wall": 0.0, "wall_max": 0.0, "cpu": 0.0, "rss_max": 0.0})
    for path in glob.glob(f"{run_dir}/*.time"):
        stage = os.path.basename(path).rsplit("-", 1)[0]
        wall, cpu, rss = time_log(path)
        s = stages[stage]
        s["tasks"] += 1
        s["wall"] += wall
        s["wall_max"] = max(s["wall_max"], wall)
        s["cpu"] += cpu
        s["rss_max"] = max(s["rss_max"], rss)
    traffic = defaultdict(lambda: defaultdict(int))
    markers = first_existing(f"{run_dir}/tasks", f"{run_dir}/out/tasks")
    for path in glob.glob(f"{markers}/*.json") if markers else []:
        name = os.path.basename(path)
        if not re.match(r"^[a-z]+-\d+-of-\d+\.json$", name):
            continue
        stage = name.split("-")[0]
        store = json.load(open(path)).get("summary", {}).get("object_store", {})
        for k, v in store.items():
            traffic[stage][k] += v
    pairs = 0
    err = f"{run_dir}/components-0.err"
    if os.path.exists(err):
        pairs = sum(int(m) for m in re.findall(r"dedup: (\d+) duplicate pairs", open(err).read()))
    wall_seq = sum(s["wall"] for s in stages.values())
    wall_crit = sum(s["wall_max"] for s in stages.values())
    cpu = sum(s["cpu"] for s in stages.values())
    print(
        f"-- {label}: {input_mb:.1f} MB in, {summary['docs_in']} documents, kept {summary['docs_out']};"
        f" wall {wall_seq:.1f} s with the tasks one after another, {wall_crit:.1f} s critical path"
        f" (slowest task per stage); CPU {cpu:.1f} s = {cpu / input_mb:.3f} CPU-s per MB"
    )
    inputs = summary["inputs"]
    print(f"   {'stage':<12} {'tasks':>5} {'wall s':>8} {'slowest':>8} {'CPU s':>8} {'CPU-s/MB':>9} {'peak MiB':>9}"
          f" {'read B/in B':>11} {'rd req/MB':>9} {'GET/input':>9} {'HEAD':>5} {'LIST':>5} {'PUT/input':>9} {'MPU req':>7}")
    for stage in [s for s in STAGES if s in stages]:
        s = stages[stage]
        row = (f"   {stage:<12} {s['tasks']:>5} {s['wall']:>8.2f} {s['wall_max']:>8.2f} {s['cpu']:>8.2f}"
               f" {s['cpu'] / input_mb:>9.4f} {s['rss_max']:>9.0f}")
        t = traffic.get(stage, {})
        if t and stage != "finish":
            # (finish's marker holds the whole run's sums, printed below)
            # Read requests (GET, LIST, HEAD) per MB the stage read; writes: objects per input and
            # the requests of multipart uploads (create, parts, complete).
            reads = t.get('read_requests', 0) + t.get('head_requests', 0)
            row += (f" {t.get('bytes_read', 0) / summary['input_bytes']:>11.3f}"
                    f" {reads / max(t.get('bytes_read', 0) / 1e6, 1e-9):>9.3f}"
                    f" {t.get('get_requests', t.get('read_requests', 0)) / inputs:>9.2f}"
                    f" {t.get('head_requests', 0):>5} {t.get('list_requests', 0):>5}"
                    f" {t.get('write_requests', 0) / inputs:>9.2f} {t.get('multipart_requests', 0):>7}")
        print(row)
    store = summary.get("object_store") or {}
    report = {
        "label": label,
        "input_mb": input_mb,
        "docs_in": summary["docs_in"],
        "docs_out": summary["docs_out"],
        "wall_sequential_s": wall_seq,
        "wall_critical_path_s": wall_crit,
        "cpu_s": cpu,
        "stages": stages,
        "traffic_by_stage": traffic,
        "object_store": store,
        "duplicate_pairs": pairs,
        "load_average": open("/proc/loadavg").read().split()[:3],
    }
    if store:
        read_mb = store["bytes_read"] / 1e6
        reads = store["read_requests"] + store.get("head_requests", 0)
        print(f"   object store (summary.json): read {store['bytes_read'] / summary['input_bytes']:.2f} bytes per input byte,"
              f" {reads / max(read_mb, 1e-9):.3f} read requests (GET, LIST, HEAD) per MB read"
              f" ({reads / input_mb:.2f} per input MB); wrote {store['bytes_written'] / 1e6:.1f} MB"
              f" in {store['write_requests']} objects ({store.get('put_requests', 0)} PUTs,"
              f" {store.get('multipart_requests', 0)} multipart requests)")
    if pairs and "components" in stages:
        rss = stages["components"]["rss_max"]
        # A process that holds next to nothing (the finish task) gives the baseline.
        base = stages["finish"]["rss_max"]
        million = pairs / 1e6
        report["components_mib_per_million_pairs"] = rss / million
        report["components_mib_above_baseline_per_million_pairs"] = (rss - base) / million
        print(f"   components: {pairs} duplicate pairs, peak RSS {rss:.0f} MiB = {rss / million:.0f} MiB per million"
              f" pairs; {rss - base:.0f} MiB above the finish task's {base:.0f} MiB = {(rss - base) / million:.0f} MiB"
              f" per million pairs (1 MiB resolution)")
    json.dump(report, open(f"{run_dir}/report.json", "w"), indent=1)


if __name__ == "__main__":
    main()
