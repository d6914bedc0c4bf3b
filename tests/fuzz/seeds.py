#!/usr/bin/python3
"""seeds.py - writes each fuzz target's seed corpus from the unit tests' data
cases, so the fuzzers start from every input someone already thought of.

usage: seeds.py OUT_DIR      (makes OUT_DIR/<target>/ for each target)

- fuzz_wire: every tests/unit/wire_cases/*/frames.json, as one mode byte
  (bit 0 keyed, bit 1 "SIGN" frames signed by the harness, bit 2 parse twice)
  and the frames joined by the harness's separator;
- fuzz_connection: every tests/unit/connection_cases/*/connection.json;
- fuzz_transform: the input of every case of tests/unit/test_transform.c.
"""
import ast
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT = os.path.join(HERE, "..", "unit")
SEP = b"\n--\n"


def frame_bytes(f):
    if isinstance(f, str):
        return f.encode("utf-8", "surrogatepass")
    if "hex" in f:
        return bytes.fromhex(f["hex"])
    return b"SIGN"


def wire(out):
    cases = os.path.join(UNIT, "wire_cases")
    for name in sorted(os.listdir(cases)):
        with open(os.path.join(cases, name, "frames.json")) as f:
            case = json.load(f)
        signs = any(isinstance(x, dict) and x.get("sign") for x in case["frames"])
        keyed = case.get("key", "unit-test-key") != ""
        mode = (1 if keyed else 0) | (2 if signs else 0) | (4 if case.get("repeat") else 0)
        body = SEP.join(frame_bytes(x) for x in case["frames"])
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([mode]) + body)


def connection(out):
    cases = os.path.join(UNIT, "connection_cases")
    for name in sorted(os.listdir(cases)):
        path = os.path.join(cases, name, "connection.json")
        if os.path.exists(path):
            with open(path, "rb") as src, open(os.path.join(out, name), "wb") as f:
                f.write(src.read())


def transform(out):
    with open(os.path.join(UNIT, "test_transform.c")) as f:
        text = f.read()
    # Each case opens with {"name", "input" (the input may be several
    # adjacent C literals); C escapes are close enough to Python's for seeds.
    lit = r'"(?:[^"\\]|\\.)*"'
    for i, m in enumerate(re.finditer(r'\{\s*(%s)\s*,\s*((?:%s\s*)+),' % (lit, lit), text)):
        parts = re.findall(lit, m.group(2))
        try:
            cell = "".join(ast.literal_eval(p) for p in parts)
        except (ValueError, SyntaxError):
            continue
        with open(os.path.join(out, "case%03d" % i), "wb") as f:
            f.write(cell.encode("utf-8", "surrogatepass"))


def main():
    out = sys.argv[1]
    for name, fn in (("fuzz_wire", wire), ("fuzz_connection", connection),
                     ("fuzz_transform", transform)):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        fn(d)
        print(f"seeds {name}: {len(os.listdir(d))}")


if __name__ == "__main__":
    main()
