"""The results of the benchmarks: a row per figure, the markdown table of them, progress notes and the machine line."""
import datetime
import os
import platform
import sqlite3
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    measured: str
    target: str = ""
    ok: bool | None = None
    figure: float | None = None  # the measured time, for rows that others are set against


def note(message):
    """Report progress on stderr, keeping stdout for the results."""
    print(message, file=sys.stderr, flush=True)


def ms(seconds):
    """Format seconds as milliseconds."""
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def load_figures(result):
    """Format a load run's rate and latencies."""
    return f"{result.rate:,.0f} req/s · p50 {result.p50_ms:.2f} ms · p99 {result.p99_ms:.2f} ms"


def render(rows, with_targets):
    """Return the rows as an aligned markdown table."""
    header = ["Benchmark", "Measured"] + (["Target", "Result"] if with_targets else [])
    table = [header]
    for row in rows:
        cells = [row.benchmark, row.measured]
        if with_targets:
            cells += [row.target, "" if row.ok is None else ("✅ pass" if row.ok else "❌ FAIL")]
        table.append(cells)
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in table]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def version(package):
    """Return an installed package's version, or '?'."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def machine():
    """Describe the machine: its CPU and cores, Linux, Python and SQLite."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


def now():
    """Return the local date and time to the minute, with its zone."""
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
