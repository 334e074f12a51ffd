"""Benchmark the Canary readings API under gunicorn and print one markdown table.

    python bench/run.py [--database-url URL] [--quick] [--workers N] [--python-load]

By default the data goes to a fresh SQLite file in bench/data/. With a PostgreSQL URL the
readings table of that database is dropped and recreated. The targets apply to SQLite only.
"""
import argparse
import datetime
import hashlib
import os
import platform
import re
import secrets
import signal
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import fixtures
import load

READINGS = 1_000_000
METRICS = ("min", "max", "median", "mean", "mode", "quartiles")
DAY = 86_400


@dataclass(frozen=True)
class Settings:
    """How long and how much each stage runs."""

    seconds: int  # single-POST load per server and round
    rounds: int  # the servers take turns, so that noise on the machine hits both alike
    warmup: int
    exact_posts: int
    batches: int  # POSTs of 1,000 readings
    metric_requests: int


FULL = Settings(seconds=10, rounds=3, warmup=2, exact_posts=20_000, batches=400, metric_requests=20)
QUICK = Settings(seconds=3, rounds=1, warmup=1, exact_posts=2_000, batches=40, metric_requests=5)


@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    measured: str
    target: str = ""
    ok: bool | None = None


def note(message):
    """Report progress on stderr, keeping stdout for the results."""
    print(message, file=sys.stderr, flush=True)


def ms(seconds):
    """Format seconds as milliseconds."""
    return f"{seconds * 1e3:.2f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def bench_single_post(api, echo, settings, use_wrk):
    """Compare one-reading POSTs to the API with the bare echo app under the same load."""
    tool = "wrk" if use_wrk else "Python load generator"

    def drive(server, device, seconds):
        if use_wrk:
            return load.run_wrk(server.port, f"/devices/{device}/readings/", seconds)
        return load.python_load(server.port, f"/devices/{device}/readings/", load.reading_body, seconds=seconds)

    for server in (api, echo):
        drive(server, "bench-warmup", settings.warmup)
    rounds = {api: [], echo: []}
    for round_number in range(1, settings.rounds + 1):
        for server in (api, echo):
            note(f"single POST: {server.name}, round {round_number} of {settings.rounds}, "
                 f"{settings.seconds} s with {tool}")
            result = drive(server, "bench-post", settings.seconds)
            note(f"  {result.rate:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
            rounds[server].append(result)
    mine, ceiling = load.combine(rounds[api]), load.combine(rounds[echo])
    ratio = mine.rate / ceiling.rate

    def figures(result):
        return f"{result.rate:,.0f} req/s · p50 {result.p50_ms:.2f} ms · p99 {result.p99_ms:.2f} ms"

    load_shape = f"{tool}, 16 connections, {settings.rounds} × {settings.seconds} s"
    return [
        Row(f"Single POST: readings API ({load_shape})", figures(mine), "p99 ≤ 25 ms", mine.p99_ms <= 25),
        Row(f"Single POST: bare Flask echo ({load_shape})", figures(ceiling)),
        Row("Single POST: API / echo req/s", f"{ratio:.0%}", "≥ 60%", ratio >= 0.60),
        Row("Single POST: errors (API)", f"{mine.errors} of {mine.requests:,} requests", "0", mine.errors == 0),
    ]


def bench_single_post_tokens(database, url, workers, api_row, settings, use_wrk):
    """Compare one-reading POSTs with AUTH=tokens to the open API's rate measured earlier in this run.

    A device token is stored directly in the benchmark database, as `flask tokens create` would store
    it, and sent by every request; a tokens-mode server runs beside the open one for this stage only.
    """
    device = "bench-tokens"
    token = "cnry_" + secrets.token_urlsafe(32)
    database.query("INSERT INTO tokens (digest, kind, device_uuid, label, created_at) VALUES (?, ?, ?, ?, ?)",
                   (hashlib.sha256(token.encode()).hexdigest(), "device", device, "benchmark", int(time.time())))
    open_rate = float(re.search(r"([\d,.]+) req/s", api_row.measured)[1].replace(",", ""))
    server = fixtures.Server("api-tokens", "app:app", workers, env={"DATABASE_URL": url, "CANARY_AUTH": "tokens"})
    path, headers = f"/devices/{device}/readings/", {**load.HEADERS, "Authorization": f"Bearer {token}"}

    def drive(seconds):
        if use_wrk:
            return load.run_wrk(server.port, path, seconds, token=token)
        return load.python_load(server.port, path, load.reading_body, seconds=seconds, headers=headers)

    server.start()
    try:
        drive(settings.warmup)
        results = []
        for round_number in range(1, settings.rounds + 1):
            note(f"single POST with tokens, round {round_number} of {settings.rounds}, {settings.seconds} s")
            results.append(drive(settings.seconds))
            note(f"  {results[-1].rate:,.0f} req/s, p50 {results[-1].p50_ms:.2f} ms, p99 {results[-1].p99_ms:.2f} ms")
    finally:
        server.stop()
    mine = load.combine(results)
    ratio = mine.rate / open_rate
    return [Row("Single POST with tokens / open req/s",
                f"{ratio:.0%} ({mine.rate:,.0f} vs {open_rate:,.0f} req/s; p99 {mine.p99_ms:.2f} ms; "
                f"{mine.errors} errors)", "≥ 90%", ratio >= 0.90 and mine.errors == 0)]


def bench_exactness(api, database, settings):
    """POST a fixed number of readings to a fresh device and compare 201s with stored rows."""
    note(f"exactness: {settings.exact_posts:,} POSTs on 16 connections")
    result = load.python_load(api.port, "/devices/bench-exact/readings/", load.reading_body,
                              total=settings.exact_posts)
    stored = database.query("SELECT COUNT(*) FROM readings WHERE device_uuid = ?", ("bench-exact",))[0][0]
    same = stored == result.ok
    return [Row(f"Exactness: {settings.exact_posts:,} POSTs, 16 connections",
                f"{result.ok:,} × 201, {stored:,} stored ({'equal' if same else 'DIFFERENT'}), "
                f"{result.errors} errors",
                "stored = 201s, 0 errors", same and result.errors == 0)]


def bench_batch(api, database, settings, clients=4):
    """POST arrays of 1,000 readings from several clients and report readings per second."""
    note(f"batch ingest: {settings.batches} POSTs of 1,000 readings from {clients} clients")
    result = load.python_load(api.port, "/devices/bench-batch/readings/", load.batch_body,
                              connections=clients, total=settings.batches)
    stored = database.query("SELECT COUNT(*) FROM readings WHERE device_uuid = ?", ("bench-batch",))[0][0]
    rate = result.ok * 1000 / result.seconds
    return [Row(f"Batch ingest: 1,000 readings per POST, {clients} clients",
                f"{rate:,.0f} readings/s ({stored:,} readings stored in {result.seconds:.1f} s, "
                f"{result.errors} errors)",
                "≥ 40,000 readings/s", rate >= 40_000 and result.errors == 0 and stored == result.ok * 1000)]


def raw_group_by(window):
    """Return the covering-index GROUP BY that a metric's histogram needs, with its parameters."""
    sql = "SELECT value, COUNT(*) FROM readings WHERE device_uuid = ? AND type = ?"
    params = (fixtures.HISTORY_DEVICE, "temperature")
    if window:
        sql += " AND date_created BETWEEN ? AND ?"
        params += window
    return sql + " GROUP BY value", params


def timed_query(database, sql, params):
    """Return how long one query takes, rows fetched, in seconds."""
    began = time.perf_counter()
    database.query(sql, params)
    return time.perf_counter() - began


def bench_metrics(api, database, settings):
    """Time every metric end to end over the whole history and a 1-day window, against raw SQL.

    App requests and raw queries alternate, so that noise on the machine hits both alike.
    """
    middle = fixtures.HISTORY_START + fixtures.YEAR // 2
    spans = {"whole history": None, "1-day window": (middle, middle + DAY)}
    rows = []
    for span, window in spans.items():
        sql, params = raw_group_by(window)
        readings = sum(count for _, count in database.query(sql, params))  # also warms the cache
        query = "?type=temperature" + (f"&start={window[0]}&end={window[1]}" if window else "")
        for metric in METRICS:
            note(f"metric {metric}, {span}: {settings.metric_requests} requests")
            path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/{metric}/{query}"
            load.timed_gets(api.port, path, 1)
            app_times, raw_times = [], []
            for _ in range(settings.metric_requests):
                raw_times.append(timed_query(database, sql, params))
                app_times += load.timed_gets(api.port, path, 1)
            p50, raw = statistics.median(app_times), statistics.median(raw_times)
            measured = f"{ms(p50)} p50 · raw GROUP BY {ms(raw)} · {p50 / raw:.2f}×"
            label = f"Metric {metric}: {span} ({readings:,} readings)"
            if window:
                rows.append(Row(label, measured, "≤ 5 ms p50", p50 <= 0.005))
            else:
                rows.append(Row(label, measured, "≤ 1.5× raw", p50 <= 1.5 * raw))
    return rows


def bench_streaming(api):
    """Stream the 1M-reading listing and report the largest RSS growth of a worker.

    The growth is split into heap (RssAnon) and file-backed pages such as a memory-mapped database.
    """
    note("streaming the full listing")
    fields = ("VmRSS", "RssAnon", "RssFile")
    before = {pid: {field: fixtures.proc_status(pid, field) for field in fields} for pid in api.worker_pids()}
    peak_reset = all(fixtures.reset_peak_rss(pid) for pid in before)
    received, rows, seconds, complete = load.stream_get(api.port, f"/devices/{fixtures.HISTORY_DEVICE}/readings/")
    growth = {pid: fixtures.proc_status(pid, "VmHWM") - kb["VmRSS"] for pid, kb in before.items()}
    pid = max(growth, key=growth.get)
    anon, mapped = (fixtures.proc_status(pid, field) - before[pid][field] for field in ("RssAnon", "RssFile"))
    caveat = "" if peak_reset else ", peak not reset: upper bound"
    whole = complete and rows == READINGS
    return [Row("Streaming: full listing, 1M readings",
                f"RSS +{growth[pid] / 1024:.1f} MB (heap {anon / 1024:+.1f}, files {mapped / 1024:+.1f}{caveat}) · "
                f"{rows:,} rows, {received / 1e6:.1f} MB in {seconds:.1f} s" + ("" if whole else " · INCOMPLETE"),
                "≤ 50 MB RSS growth", growth[pid] <= 50 * 1024 and whole)]


FLEET_DEVICES = 10_000
FLEET_READINGS = 50


def raw_bucket_group_by(width, window):
    """Return the covering-index GROUP BY bucket, value that a series needs, with its parameters."""
    sql = f"SELECT date_created / {width} AS bucket, value, COUNT(*) FROM readings WHERE device_uuid = ? AND type = ?"
    params = (fixtures.HISTORY_DEVICE, "temperature")
    if window:
        sql += " AND date_created BETWEEN ? AND ?"
        params += window
    return sql + " GROUP BY bucket, value", params


def compare_with_raw(api, database, path, sql, params, requests):
    """Time a GET and a raw query alternately; return the p50 of each in seconds."""
    database.query(sql, params)  # warms the cache
    load.timed_gets(api.port, path, 1)
    app_times, raw_times = [], []
    for _ in range(requests):
        raw_times.append(timed_query(database, sql, params))
        app_times += load.timed_gets(api.port, path, 1)
    return statistics.median(app_times), statistics.median(raw_times)


def bench_series(api, database, settings):
    """Time the series over the whole year at 1-day buckets and over one day at 5-minute buckets."""
    middle = fixtures.HISTORY_START + fixtures.YEAR // 2
    cases = [  # label, query, raw bucket width, window, target
        ("1 year at 1-day buckets, UTC", "interval=1d", DAY, None, "≤ 1.5× raw"),
        ("1 year at 1-day buckets, Europe/London", "interval=1d&tz=Europe/London", DAY, None, ""),
        ("1-day window at 5-minute buckets", f"interval=5m&start={middle}&end={middle + DAY}", 300,
         (middle, middle + DAY), "≤ 10 ms p50"),
    ]
    rows = []
    for label, query, width, window, target in cases:
        note(f"series, {label}: {settings.metric_requests} requests")
        sql, params = raw_bucket_group_by(width, window)
        readings = sum(count for _, _, count in database.query(sql, params))
        path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/series/?type=temperature&{query}"
        p50, raw = compare_with_raw(api, database, path, sql, params, settings.metric_requests)
        measured = f"{ms(p50)} p50 · raw GROUP BY bucket, value {ms(raw)} · {p50 / raw:.2f}×"
        ok = None if not target else (p50 <= 1.5 * raw if window is None else p50 <= 0.010)
        rows.append(Row(f"Series: {label} ({readings:,} readings)", measured, target, ok))
    return rows


def bench_summary(url, workers, settings):
    """Time the fleet summary against the raw GROUP BY device, value and watch a worker's RSS."""
    fleet_url = fixtures.fleet_url(url)
    total = FLEET_DEVICES * FLEET_READINGS
    note(f"generating the fleet: {FLEET_DEVICES:,} devices × {FLEET_READINGS} readings")
    fixtures.generate_fleet(fleet_url, FLEET_DEVICES, FLEET_READINGS)
    os.sync()
    database = fixtures.Database(fleet_url)
    server = fixtures.Server("fleet-api", "app:app", workers, env={"DATABASE_URL": fleet_url})
    try:
        server.start()
        path = "/devices/summary/?type=temperature"
        load.timed_gets(server.port, path, 1)
        note("streaming the summary")
        fields = ("VmRSS", "RssAnon", "RssFile")
        before = {pid: {field: fixtures.proc_status(pid, field) for field in fields} for pid in server.worker_pids()}
        peak_reset = all(fixtures.reset_peak_rss(pid) for pid in before)
        received, devices, seconds, complete = load.stream_get(server.port, path)
        growth = {pid: fixtures.proc_status(pid, "VmHWM") - kb["VmRSS"] for pid, kb in before.items()}
        note(f"summary of {FLEET_DEVICES:,} devices: {settings.metric_requests} requests")
        sql = "SELECT device_uuid, value, COUNT(*) FROM readings WHERE type = ? GROUP BY device_uuid, value"
        p50, raw = compare_with_raw(server, database, path, sql, ("temperature",), settings.metric_requests)
    finally:
        server.stop()
        database.close()
    pid = max(growth, key=growth.get)
    caveat = "" if peak_reset else ", peak not reset: upper bound"
    whole = complete and devices == FLEET_DEVICES
    label = f"{FLEET_DEVICES:,} devices × {FLEET_READINGS} readings ({total:,})"
    return [
        Row(f"Summary: {label}", f"{ms(p50)} p50 · raw GROUP BY device_uuid, value {ms(raw)} · {p50 / raw:.2f}×",
            "≤ 1.5× raw", p50 <= 1.5 * raw),
        Row(f"Summary: streaming, {label}",
            f"RSS +{growth[pid] / 1024:.1f} MB{caveat} · {devices:,} devices, {received / 1e6:.1f} MB in "
            f"{seconds:.2f} s" + ("" if whole else " · INCOMPLETE"),
            "≤ 50 MB RSS growth", growth[pid] <= 50 * 1024 and whole),
    ]


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


def machine_line(database_version, workers, use_wrk, load_average):
    """Describe the machine, the software and the set-up the figures come from."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"Machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; database: {database_version}; "
            f"gunicorn with {workers} sync workers; load: {'wrk' if use_wrk else 'Python load generator'}; "
            f"load average {load_average:.2f} at start; {when}")


def parse_args():
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: a new SQLite file in bench/data/)")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for trying the benchmark out")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator, not wrk")
    return parser.parse_args()


def main():
    """Generate the data, start the servers, run every stage and print the table."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    settings = QUICK if args.quick else FULL
    url = args.database_url or fixtures.default_url()
    use_wrk = load.wrk_available() and not args.python_load
    load_average = os.getloadavg()[0]  # other work on the machine skews the figures

    note(f"generating {READINGS:,} readings")
    began = time.perf_counter()
    fixtures.generate(url, READINGS)
    note(f"generated in {time.perf_counter() - began:.1f} s")
    # Otherwise the kernel writes the new data back during the first round, stalling its fsyncs.
    os.sync()

    database = fixtures.Database(url)
    database_version, is_postgres = database.version(), database.is_postgres
    servers = [
        fixtures.Server("api", "app:app", args.workers, env={"DATABASE_URL": url, "CANARY_AUTH": "open"}),
        fixtures.Server("echo", "echo_app:app", args.workers, args=("--pythonpath", str(fixtures.REPO / "bench"))),
    ]
    api, echo = servers
    try:
        for server in servers:
            server.start()
        rows = bench_single_post(api, echo, settings, use_wrk)
        rows += bench_single_post_tokens(database, url, args.workers, rows[0], settings, use_wrk)
        rows += bench_exactness(api, database, settings)
        rows += bench_batch(api, database, settings)
        rows += bench_metrics(api, database, settings)
        rows += bench_streaming(api)
        rows += bench_series(api, database, settings)
        rows += bench_summary(url, args.workers, settings)
    finally:
        for server in servers:
            server.stop()
        database.close()
    print(machine_line(database_version, args.workers, use_wrk, load_average))
    print()
    print(render(rows, with_targets=not is_postgres))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        note("interrupted; the servers were stopped")
        sys.exit(130)
