"""Summarise an Autobahn (kosoku) report directory in one line and fail on any
case that is not OK, NON-STRICT or INFORMATIONAL.

usage: summary.py ROLE REPORT_DIR
"""

import json
import sys
from pathlib import Path

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}


def main() -> int:
    role, report_dir = sys.argv[1], Path(sys.argv[2])
    index = json.loads((report_dir / "index.json").read_text())
    counts = {"ok": 0, "non-strict": 0, "informational": 0, "failed": 0}
    failed = []
    for agent, cases in index.items():
        for case_id, result in cases.items():
            behavior, close = result["behavior"], result["behaviorClose"]
            if behavior not in PASSING or close not in PASSING:
                counts["failed"] += 1
                failed.append(f"{case_id} ({agent}): behavior {behavior}, close {close}")
            elif behavior == "NON-STRICT" or close == "NON-STRICT":
                counts["non-strict"] += 1
            elif behavior == "INFORMATIONAL" or close == "INFORMATIONAL":
                counts["informational"] += 1
            else:
                counts["ok"] += 1
    total = sum(counts.values())
    if total == 0:
        print(f"autobahn {role}: no cases ran")
        return 1
    for line in failed:
        print(f"  FAILED {line}")
    print(
        f"autobahn {role}: {counts['ok']} ok, {counts['non-strict']} non-strict, "
        f"{counts['informational']} informational, {counts['failed']} failed"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
