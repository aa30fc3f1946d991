"""Figures the reliability suites measure (latencies, memory, counts), printed by `make reliability`.

``record`` keeps each figure in memory and, when ``RELIABILITY_FIGURES`` names a file, appends it
there as one JSON line; ``python -m tests.figures FILE`` prints a table of the last run. Plain
``pytest`` (CI) records nothing to disk and prints nothing extra.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

FIGURES: dict[tuple[str, str], float | str] = {}


def record(suite: str, name: str, value: float | str) -> None:
    """Keep ``value`` as the figure ``name`` of ``suite`` (and append it to $RELIABILITY_FIGURES)."""
    FIGURES[(suite, name)] = value
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with Path(target).open("a") as sink:
            sink.write(json.dumps({"suite": suite, "name": name, "value": value, "at": time.time()}) + "\n")


def table(path: Path) -> str:
    rows: dict[tuple[str, str], object] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        rows[(entry["suite"], entry["name"])] = entry["value"]
    width = max((len(f"{s} / {n}") for s, n in rows), default=10)
    lines = [f"{'suite / figure':<{width}}  value", "-" * (width + 12)]
    for (suite, name), value in sorted(rows.items()):
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{f'{suite} / {name}':<{width}}  {shown}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
