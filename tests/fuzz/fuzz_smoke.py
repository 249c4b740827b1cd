"""fuzz_smoke: builds the libFuzzer targets with clang (when asked to) and
runs each for a bounded time, after replaying its regression inputs.

    fuzz_smoke.py --source <repo> --build-dir <dir> [--seconds N]
        configures tests/fuzz as a standalone clang project in <dir>, builds
        fuzz_body and fuzz_path, then runs them
    fuzz_smoke.py --bin-dir <dir> [--seconds N]
        runs targets that are already built in <dir>

Per target it prints the executions, executions per second and crashes;
a crash, leak, timeout or broken invariant fails the run, and its input is
kept under <build>/fuzz-artifacts/<target>/ to become a regression file
(tests/fuzz/regressions/<target>/). Ends with "N passed, N failed".
Exit 77 (ctest: skipped) when clang is missing outside CI; under CI=true
a missing clang is a failure. Not here: the targets (fuzz_*.c).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ("fuzz_body", "fuzz_path")
SKIP = 77

results = []  # (name, ok)


def report(name, ok, detail=""):
    results.append((name, ok))
    print("%s %s%s" % ("ok" if ok else "not ok", name, (" - " + detail) if detail else ""),
          flush=True)


def finish():
    passed = sum(1 for _, ok in results if ok)
    failed = len(results) - passed
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


def tail(path, n=6000):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")[-n:]


def build(source, build_dir, log_path):
    """Configures and builds the standalone fuzz project. Returns the bin dir or None."""
    clang = shutil.which("clang")
    if clang is None:
        if os.environ.get("CI") == "true":
            report("build", False, "clang is not installed (install-deps.sh --test installs it)")
            return None
        print("clang is not installed: fuzz_smoke skipped", flush=True)
        sys.exit(SKIP)
    jobs = os.environ.get("SNAP_FUZZ_JOBS", "2")
    steps = [
        ["cmake", "-S", os.path.join(source, "tests", "fuzz"), "-B", build_dir,
         "-DCMAKE_C_COMPILER=" + clang, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
        ["cmake", "--build", build_dir, "-j", jobs, "--target"] + list(TARGETS),
    ]
    t0 = time.time()
    with open(log_path, "wb") as log:
        for argv in steps:
            rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT)
            if rc != 0:
                report("build", False, "%s exited %d" % (" ".join(argv[:3]), rc))
                print(tail(log_path), flush=True)
                return None
    report("build", True, "clang build in %s (%.0f s)" % (build_dir, time.time() - t0))
    return os.path.join(build_dir, "fuzz")


def run_fuzzer(argv, log_path, timeout):
    with open(log_path, "wb") as log:
        try:
            return subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1


def replay(target, binary, art_root):
    """Each file of regressions/<target>/ must run clean."""
    rdir = os.path.join(HERE, "regressions", target)
    files = sorted(os.path.join(rdir, f) for f in os.listdir(rdir)) if os.path.isdir(rdir) else []
    files = [f for f in files if os.path.isfile(f) and not f.endswith(".md")]
    if not files:
        print("%s: no regression inputs" % target, flush=True)
        return
    log_path = os.path.join(art_root, "%s-replay.log" % target)
    rc = run_fuzzer([binary, "-timeout=10"] + files, log_path, timeout=300)
    ok = rc == 0
    report("%s_regressions" % target, ok, "%d inputs replayed" % len(files))
    if not ok:
        print(tail(log_path), flush=True)


def fuzz(target, binary, seconds, art_root):
    """Runs the target on its seed corpus for seconds; new inputs go to a temp dir."""
    art_dir = os.path.join(art_root, target)
    os.makedirs(art_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="snap-%s-" % target)
    seeds = os.path.join(HERE, "corpus", target)
    argv = [binary, "-max_total_time=%d" % seconds, "-print_final_stats=1", "-timeout=10",
            "-rss_limit_mb=2048", "-artifact_prefix=" + art_dir + "/", work]
    dict_path = os.path.join(HERE, "%s.dict" % target)
    if os.path.exists(dict_path):
        argv.insert(1, "-dict=" + dict_path)
    if os.path.isdir(seeds):
        argv.append(seeds)
    before = set(os.listdir(art_dir))
    log_path = os.path.join(art_root, "%s.log" % target)
    t0 = time.time()
    rc = run_fuzzer(argv, log_path, timeout=seconds + 120)
    elapsed = max(time.time() - t0, 1e-3)
    shutil.rmtree(work, ignore_errors=True)
    text = tail(log_path, 200000)
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", text) or \
        re.search(r"Done (\d+) runs", text)
    execs = int(m.group(1)) if m else 0
    cov = re.findall(r"\bcov: (\d+)", text)
    new = sorted(set(os.listdir(art_dir)) - before)
    crashes = [f for f in new if re.match(r"(crash|leak|timeout|oom|slow-unit)-", f)]
    detail = "%d executions in %.0f s (%.0f/s), coverage %s, %d crashes" % (
        execs, elapsed, execs / elapsed, cov[-1] if cov else "?", len(crashes))
    ok = rc == 0 and not crashes and execs > 0
    report(target, ok, detail)
    if not ok:
        print(text[-6000:], flush=True)
        for f in crashes:
            path = os.path.join(art_dir, f)
            with open(path, "rb") as fh:
                data = fh.read()
            print("reproducer %s (%d bytes): %r" % (path, len(data), data[:300]), flush=True)
            print("  keep it: cp %s %s/" % (path, os.path.join(HERE, "regressions", target)),
                  flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source")
    ap.add_argument("--build-dir")
    ap.add_argument("--bin-dir")
    ap.add_argument("--seconds", type=int,
                    default=int(os.environ.get("SNAP_FUZZ_SECONDS", "30")))
    args = ap.parse_args()
    if os.environ.get("SNAP_FUZZ_SECONDS"):
        args.seconds = int(os.environ["SNAP_FUZZ_SECONDS"])

    if args.bin_dir:
        bin_dir = args.bin_dir
        art_root = os.path.join(os.path.dirname(os.path.abspath(bin_dir)), "fuzz-artifacts")
    elif args.source and args.build_dir:
        art_root = os.path.join(args.build_dir, "fuzz-artifacts")
        os.makedirs(art_root, exist_ok=True)
        bin_dir = build(args.source, args.build_dir, os.path.join(art_root, "build.log"))
        if bin_dir is None:
            return finish()
    else:
        ap.error("give --bin-dir, or --source and --build-dir")
    os.makedirs(art_root, exist_ok=True)

    for target in TARGETS:
        binary = os.path.join(bin_dir, target)
        if not os.access(binary, os.X_OK):
            report(target, False, "%s is not built" % binary)
            continue
        replay(target, binary, art_root)
        fuzz(target, binary, args.seconds, art_root)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
