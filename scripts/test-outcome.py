#!/usr/bin/env python3
"""Says in one last line why a `swift test` run failed when its test process crashed.

Usage: scripts/test-outcome.py LOG STATUS

LOG is everything `swift test` printed, STATUS its exit status. When the run crashed (the Swift runtime's
"Program crashed" report, or swift test's "unexpected signal"), this prints which tests were running at the
time (started, never finished) and the crash's first line, so a 3,000-line backtrace is not the only hint.
Prints nothing for a run that did not crash. Always exits 0: the caller keeps the test run's status.
"""

import re
import sys

STARTED = [re.compile(r"^.*Test (?P<name>.+?) started\.$"),  # swift-testing: "◇ Test foo() started."
           re.compile(r"^Test Case '(?P<name>.+)' started")]  # XCTest
ENDED = [re.compile(r"^.*Test (?P<name>.+?) (passed|failed|skipped|recorded an issue).*$"),
         re.compile(r"^Test Case '(?P<name>.+)' (passed|failed|skipped)")]
CRASH = re.compile(r"\*\*\* (Program crashed: .*?) \*\*\*|(Exited with unexpected signal code \d+)|"
                   r"(Fatal error: .*)|(Signal \d+: Backtracing)")


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 0
    path, status = argv[1], int(argv[2])
    if status == 0:
        return 0
    running, crash = {}, None
    with open(path, encoding="utf-8", errors="replace") as log:
        for number, line in enumerate(log):
            line = line.rstrip("\n")
            for pattern in STARTED:
                match = pattern.match(line)
                if match and "Suite" not in line.split("Test", 1)[0]:
                    running[match.group("name")] = number
            for pattern in ENDED:
                match = pattern.match(line)
                if match:
                    running.pop(match.group("name"), None)
            found = CRASH.search(line)
            if found and crash is None:
                crash = next(group for group in found.groups() if group)
    if crash is None:
        return 0
    names = sorted(running, key=running.get)
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    print(f"scripts/test: FAILED: the test process crashed ({crash}) while {len(names)} test(s) ran: "
          f"{shown or 'none reported'}. The backtrace is above; the children the tests started were killed "
          f"with it (PR_SET_PDEATHSIG).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
