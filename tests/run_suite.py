#!/usr/bin/python3
"""run_suite.py - runs every test stage and ends with one closing line,
"N passed, N failed", that CI reads.

Stages: the C sources' formatting against .clang-format (each file counts),
the C unit tests (each TAP assertion counts), the pytest suite against the
normal build, the libFuzzer targets for 20 s each (tests/fuzz/run.sh), and
the C unit tests and protocol suite again against the AddressSanitizer+UBSan
build.

usage: run_suite.py BUILD_DIR ASAN_BUILD_DIR
"""
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def tap_stage(name, build, env=None):
    """Runs each unit test binary and counts TAP 'ok' / 'not ok' lines."""
    passed = failed = 0
    unit = os.path.join(build, "tests", "unit")
    tests = sorted(f for f in os.listdir(unit) if f.startswith("test_") and
                   os.access(os.path.join(unit, f), os.X_OK) and "." not in f)
    for t in tests:
        p = subprocess.run([os.path.join(unit, t)], cwd=os.path.join(ROOT, "tests", "unit"),
                           capture_output=True, text=True, env=env)
        ok = len(re.findall(r"^ok \d+", p.stdout, re.M))
        bad = len([l for l in p.stdout.splitlines()
                   if l.startswith("not ok") and "# TODO" not in l])
        if p.returncode != 0 and bad == 0:
            bad = 1  # crashed, or a sanitizer stopped it
        if bad:
            sys.stdout.write(p.stdout + p.stderr)
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
            print(f"  format: {path} differs from clang-format's output "
                  f"(run: clang-format -i {path})")
    print(f"  format: {passed} files ok, {failed} differ")
    return passed, failed


def pytest_stage(name, build, paths, env_extra=None):
    env = dict(os.environ, PYROMETER_BUILD=build, **(env_extra or {}))
    with tempfile.NamedTemporaryFile(suffix=".xml") as xml:
        p = subprocess.run([PY, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            f"--junitxml={xml.name}"] + paths, cwd=ROOT, env=env)
        try:
            root = ET.parse(xml.name).getroot()
        except ET.ParseError:
            return 0, 1
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        tests = int(suite.get("tests"))
        bad = int(suite.get("failures")) + int(suite.get("errors"))
        skipped = int(suite.get("skipped"))
        if p.returncode not in (0, 1) and bad == 0:
            bad = 1
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
    failed = len(re.findall(r"^target \S+: FINDING", p.stdout, re.M))
    if p.returncode != 0 and failed == 0:
        failed = 1  # the build or the script itself failed
    return passed, failed


def main():
    build, asan = sys.argv[1], sys.argv[2]
    san = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
               LSAN_OPTIONS="suppressions=%s:print_suppressions=0"
               % os.path.join(ROOT, "tests", "lsan.supp"),
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    results = [
        format_stage(),
        tap_stage("unit", build),
        pytest_stage("pytest", build, ["tests"]),
        fuzz_stage(),
        tap_stage("unit[asan]", asan, env=san),
        pytest_stage("protocol[asan]", asan, ["tests/protocol"],
                     {k: san[k] for k in ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")}),
    ]
    passed = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
