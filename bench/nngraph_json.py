"""Reading `nngraph bench --json` (Google Benchmark's layout) in the peer scripts."""
import json

SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def step_seconds(json_text):
    """Each timed repetition's step time in seconds: every row carries its own time unit, chosen so
    that the figure keeps three significant digits."""
    runs = json.loads(json_text)["benchmarks"]
    return [b["real_time"] * SECONDS_PER_UNIT[b["time_unit"]] for b in runs if b["run_type"] == "iteration"]


def median_row(json_text):
    """The `median` aggregate row: the step's median time and, beside it, the work, the ceilings and
    the fractions of them."""
    runs = json.loads(json_text)["benchmarks"]
    return next(b for b in runs if b.get("aggregate_name") == "median")


def row_seconds(row):
    return row["real_time"] * SECONDS_PER_UNIT[row["time_unit"]]
