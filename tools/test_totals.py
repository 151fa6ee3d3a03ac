#!/usr/bin/env python3
"""Sums the doctest totals of every suite in a meson testlog.json and prints `N passed, N failed`.

A suite that crashed or timed out before printing its doctest summary counts as one failed test;
a suite that exits 77 (e.g. the CUDA smoke test without a GPU) counts as skipped.
"""
import json
import re
import sys

SUMMARY = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped")


def main(path):
    passed = failed = skipped = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            entry = json.loads(line)
            result = entry.get("result")
            found = SUMMARY.findall(entry.get("stdout") or entry.get("stdo") or "")
            if result == "SKIP":
                skipped += 1
            elif found:
                # doctest's own "skipped" counts the cases its filters left out: the unity test programs hold
                # several suites and run one per meson test (tests/meson.build), so it is not added
                _, p, fl, _ = map(int, found[-1])
                passed += p
                failed += fl
                if result != "OK" and fl == 0:
                    failed += 1  # non-zero exit despite a clean summary
            elif result == "OK":
                passed += 1  # a plain (non-doctest) test program that succeeded
            else:
                failed += 1
                print("suite %s: %s without a doctest summary" % (entry.get("name"), result))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))


if __name__ == "__main__":
    main(sys.argv[1])
