#!/usr/bin/python3
"""run_suite.py - runs every test stage and ends with one closing line,
"N passed, N failed", that CI reads.

On the host (Python 3.11): the C sources' formatting against .clang-format
(each file counts), the C unit tests (each TAP assertion counts), the pytest
suite against the normal build, the libFuzzer targets for 20 s each
(tests/fuzz/run.sh), and the C unit tests and protocol suite again against
the AddressSanitizer+UBSan build.

With --forky, then in the Debian forky root (tests/platforms/forky_root.sh
makes it the first time, about 5-10 minutes, and reuses it after): each
Python of FORKY is built into its own build dir by
tests/platforms/forky_build.sh (build-py3.14, ...), and its stages run
there: the C unit tests, and the pytest paths of FORKY. A build that fails
counts as one failure and its Python's tests do not run.

usage: run_suite.py BUILD_DIR ASAN_BUILD_DIR [--forky] [--no-host] [--python 3.14 ...]
  --forky       also run the forky stages (make test passes it)
  --no-host     only the forky stages (BUILD_DIR and ASAN_BUILD_DIR unused)
  --python V    only these forky Pythons (repeatable; implies --forky)
"""
import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"
PLATFORMS = os.path.join(ROOT, "tests", "platforms")
FORKY_ROOT = os.path.join(PLATFORMS, "forky_root.sh")
FORKY_BUILD = os.path.join(PLATFORMS, "forky_build.sh")
# Screenshots and other files the tests leave for people to look at.
ARTIFACTS = os.path.join(ROOT, "out", "test-artifacts")

# The forky Pythons, in the order they run. "self": pytest paths run by that
# Python itself (the magic tests import the built module into the test
# process). "driven": paths run by the root's python3 (3.14, which has every
# package the drivers need: jupyter_client, pyzmq, selenium) against the
# kernel built for that Python; the kernel is a process of its own, and
# PYROMETER_PYTHON tells the tests which Python it runs. 3.13 has no pyzmq
# in forky, so its protocol tests can only be driven this way.
FORKY = [
    ("3.14", {"self": ["tests"], "driven": []}),
    ("3.13", {"self": ["tests/magics"], "driven": ["tests/protocol"]}),
    ("3.15", {"self": ["tests/magics"], "driven": ["tests/protocol"]}),
]
FORKY_DRIVER = "/usr/bin/python3"


class Place:
    """Where a stage's commands run: on the host, or inside the forky root
    (this checkout is mounted at the same path there, so paths agree)."""

    def __init__(self, in_root):
        self.in_root = in_root

    def run(self, argv, cwd=ROOT, env_extra=None, **kw):
        env_extra = env_extra or {}
        if self.in_root:
            argv = [FORKY_ROOT, "run", "env", "-C", cwd] + \
                ["%s=%s" % kv for kv in env_extra.items()] + list(argv)
            return subprocess.run(argv, cwd=ROOT, **kw)
        return subprocess.run(argv, cwd=cwd, env=dict(os.environ, **env_extra), **kw)


# What failed, stage by stage, printed again just above the closing line so
# the end of a long log (all CI keeps) names each failure.
FAILURES = []

HOST = Place(False)
FORKY_PLACE = Place(True)


def tap_stage(name, build, env_extra=None, place=HOST):
    """Runs each unit test binary and counts TAP 'ok' / 'not ok' lines."""
    passed = failed = 0
    unit = os.path.join(build, "tests", "unit")
    tests = sorted(f for f in os.listdir(unit) if f.startswith("test_") and
                   os.access(os.path.join(unit, f), os.X_OK) and "." not in f)
    for t in tests:
        p = place.run([os.path.join(unit, t)], cwd=os.path.join(ROOT, "tests", "unit"),
                      env_extra=env_extra, capture_output=True, text=True)
        ok = len(re.findall(r"^ok \d+", p.stdout, re.M))
        not_ok = [l for l in p.stdout.splitlines()
                  if l.startswith("not ok") and "# TODO" not in l]
        bad = len(not_ok)
        if p.returncode != 0 and bad == 0:
            bad = 1  # crashed, or a sanitizer stopped it
        if bad:
            sys.stdout.write(p.stdout + p.stderr)
            FAILURES.extend(f"{name} {t}: {l}" for l in not_ok or ["exit %d" % p.returncode])
        print(f"  {name} {t}: {ok} ok, {bad} failed")
        passed += ok
        failed += bad
    return passed, failed


def format_stage():
    """Each C file must be exactly as clang-format (.clang-format) writes it."""
    passed = failed = 0
    paths = []
    for folder in ("kernel", "ext", "tests"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
            paths += [os.path.relpath(os.path.join(dirpath, n), ROOT)
                      for n in names if n.endswith((".c", ".h"))]
    for path in sorted(paths):
        p = subprocess.run(["clang-format", "--dry-run", "--Werror", path], cwd=ROOT,
                           capture_output=True, text=True)
        if p.returncode == 0:
            passed += 1
        else:
            failed += 1
            FAILURES.append(f"format: {path}")
            print(f"  format: {path} differs from clang-format's output "
                  f"(run: clang-format -i {path})")
    print(f"  format: {passed} files ok, {failed} differ")
    return passed, failed


def pytest_stage(name, build, paths, env_extra=None, python=PY, place=HOST):
    """pytest on paths, counted from its JUnit XML (kept in the build dir,
    which the forky root sees at the same path)."""
    xml = os.path.join(build, "junit-%s.xml" % re.sub(r"[^\w.-]+", "_", name))
    if os.path.exists(xml):
        os.unlink(xml)
    env = dict(PYROMETER_BUILD=build, PYROMETER_ARTIFACTS=os.path.join(ARTIFACTS, name),
               **(env_extra or {}))
    # A test stuck for 10 minutes gets every thread's stack printed.
    p = place.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                   "-o", "faulthandler_timeout=600", f"--junitxml={xml}"] + paths, env_extra=env)
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        print(f"  {name}: pytest wrote no report (exit {p.returncode})")
        FAILURES.append(f"{name}: pytest wrote no report (exit {p.returncode})")
        return 0, 1
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests = int(suite.get("tests"))
    bad = int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    for case in suite.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            FAILURES.append(f"{name}: {case.get('classname')}::{case.get('name')}")
    if p.returncode not in (0, 1) and bad == 0:
        bad = 1
        FAILURES.append(f"{name}: pytest exit {p.returncode}")
    print(f"  {name}: {tests - bad - skipped} passed, {bad} failed, {skipped} skipped")
    return tests - bad - skipped, bad


def fuzz_stage(seconds=20):
    """tests/fuzz/run.sh: each libFuzzer target for a short while; a target
    with no finding counts as passed, one with a finding as failed."""
    p = subprocess.run([os.path.join(ROOT, "tests", "fuzz", "run.sh"), str(seconds)],
                       cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write("".join("  " + l + "\n" for l in p.stdout.splitlines()))
    if p.stderr.strip():
        sys.stdout.write(p.stderr)
    passed = len(re.findall(r"^target \S+: .*no findings$", p.stdout, re.M))
    findings = re.findall(r"^target \S+: FINDING.*$", p.stdout, re.M)
    failed = len(findings)
    FAILURES.extend("fuzz: " + l for l in findings)
    if p.returncode != 0 and failed == 0:
        failed = 1  # the build or the script itself failed
        FAILURES.append(f"fuzz: run.sh exit {p.returncode}")
    return passed, failed


def timed(label, fn, *args, **kw):
    """Runs one stage, printing its name before and its time after."""
    print(f"== {label}", flush=True)
    t0 = time.monotonic()
    result = fn(*args, **kw)
    print(f"   ({label}: {time.monotonic() - t0:.0f} s)", flush=True)
    return result


def host_stages(build, asan):
    san = dict(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               LSAN_OPTIONS="suppressions=%s:print_suppressions=0"
               % os.path.join(ROOT, "tests", "lsan.supp"),
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    return [
        timed("format", format_stage),
        timed("unit", tap_stage, "unit", build),
        timed("pytest", pytest_stage, "pytest", build, ["tests"]),
        timed("fuzz", fuzz_stage),
        timed("unit[asan]", tap_stage, "unit[asan]", asan, san),
        timed("protocol[asan]", pytest_stage, "protocol[asan]", asan, ["tests/protocol"], san),
    ]


def make_root():
    """The forky root, made or reused; 1 failure when it cannot be made."""
    p = subprocess.run([FORKY_ROOT, "make"], cwd=ROOT)
    if p.returncode != 0:
        print(f"  forky root: {FORKY_ROOT} failed (exit {p.returncode})")
        FAILURES.append(f"forky root: exit {p.returncode}")
        return 0, 1
    return 0, 0


def build_stage(version):
    """Builds build-pyVERSION in the root; 1 failure when it does not build."""
    p = subprocess.run([FORKY_BUILD, version], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stdout + p.stderr).splitlines()
        errors = [l for l in lines if re.search(r"error|FAILED|ERROR", l)]
        print("\n".join(("    " + l)[:400] for l in (errors[:20] or lines[-20:])))
        print(f"  build[{version}]: failed (exit {p.returncode}); its tests do not run")
        FAILURES.append(f"build[{version}]: exit {p.returncode}")
        return 0, 1
    print(f"  build[{version}]: ok")
    return 0, 0


def forky_stages(versions):
    results = [timed("forky root", make_root)]
    if results[0][1]:
        return results
    for version, paths in FORKY:
        if version not in versions:
            continue
        built = timed(f"build[{version}]", build_stage, version)
        results.append(built)
        if built[1]:
            continue
        build = os.path.join(ROOT, "build-py" + version)
        python = "/usr/bin/python" + version
        env = dict(PYROMETER_PYTHON=python)
        results.append(timed(f"unit[{version}]", tap_stage, f"unit[{version}]", build,
                             place=FORKY_PLACE))
        if paths["self"]:
            results.append(timed(f"pytest[{version}]", pytest_stage, f"pytest[{version}]",
                                 build, paths["self"], env, python, FORKY_PLACE))
        if paths["driven"]:
            name = f"pytest[{version}, driven by python3]"
            results.append(timed(name, pytest_stage, name, build, paths["driven"], env,
                                 FORKY_DRIVER, FORKY_PLACE))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("asan")
    ap.add_argument("--forky", action="store_true")
    ap.add_argument("--no-host", action="store_true")
    ap.add_argument("--python", action="append", choices=[v for v, _ in FORKY])
    args = ap.parse_args()
    versions = args.python or ([v for v, _ in FORKY] if args.forky else [])
    if args.no_host and not versions:
        versions = [v for v, _ in FORKY]

    t0 = time.monotonic()
    results = [] if args.no_host else host_stages(args.build, args.asan)
    if versions:
        results += forky_stages(versions)
    passed = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    print(f"   (all stages: {(time.monotonic() - t0) / 60:.1f} min)")
    for line in FAILURES:
        print("FAILED " + line)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
