"""Compare two JUnit reports of Popoto's suite: without and with redis_tenancy.popoto.

Usage: python popoto_suite_compare.py WITHOUT.xml WITH.xml [HARNESS_REPORT.json]

Prints the totals of each run, the tests that fail only with the integration ("new
failures"), those that fail only without it, and the tests that leaked a write to the
default tenant. Exits 1 when there is a new failure.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str]:
    """``{test id: passed|failed|skipped}`` (an error counts as failed)."""
    found = {}
    for case in ET.parse(path).iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            found[test] = "failed"
        elif case.find("skipped") is not None:
            found[test] = found.get(test, "skipped")
        else:
            found.setdefault(test, "passed")
    return found


def totals(results: dict[str, str]) -> str:
    counts = {
        kind: sum(1 for r in results.values() if r == kind)
        for kind in ("passed", "failed", "skipped")
    }
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def main(argv: list[str]) -> int:
    without, with_ = outcomes(argv[1]), outcomes(argv[2])
    print(f"without the integration: {totals(without)}")
    print(f"with install() + tenant: {totals(with_)}")
    new = sorted(t for t, r in with_.items() if r == "failed" and without.get(t) == "passed")
    gone = sorted(t for t, r in without.items() if r == "failed" and with_.get(t) == "passed")
    both = sum(1 for t, r in with_.items() if r == "failed" and without.get(t) == "failed")
    print(f"failing in both runs: {both}")
    print(f"new failures with the integration: {len(new)}")
    for test in new:
        print(f"  + {test}")
    print(f"failing only without the integration: {len(gone)}")
    for test in gone:
        print(f"  - {test}")
    if len(argv) > 3:
        with open(argv[3], encoding="utf-8") as report:
            leaks = json.load(report)["leaks"]
        print(f"tests that wrote to the default tenant (trap db): {len(leaks)}")
        for test, keys in leaks:
            print(f"  ! {test} ({keys} keys)")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
