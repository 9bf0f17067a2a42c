"""What the benchmarks share: percentiles and where their results go."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def write_results(bench: str, **payload: Any) -> Path:
    """bench/results/<bench>-<UTC time>.json, with the machine it ran on; prints where."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{bench}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    document = {
        "bench": bench,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        **payload,
    }
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    print(f"\nwritten: {shown}")
    return out
