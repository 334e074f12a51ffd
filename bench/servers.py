"""Compare HTTP server designs for the readings API on one SQLite database and print one markdown table.

    python bench/servers.py [--quick] [--only KEY,KEY...]

For each candidate server: single-reading POST throughput and p99 under wrk, the bare Flask echo
app's throughput under the same server settings, a normal client's latency while slow-header and
slow-body clients are connected, and a slow reader of a long listing. Every server starts from the
repo root in its own session on a free port and is stopped, with its whole process group, after.
"""
import argparse
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import fixtures
import launchers
import load
import slowclients
from table import machine, note, now, version

POST_PATH = "/devices/bench-post/readings/"
WORKERS = 2
GTHREAD_THREADS = 8
# One thread per wrk connection: concurrent single readings of a process share one commit.
WAITRESS_THREADS = 16
# The default of 100 connections left no room for 64 slow headers plus 64 slow bodies.
WAITRESS_CONNECTIONS = 1000
PLURAL = {"header": "headers", "body": "bodies"}


@dataclass(frozen=True)
class Settings:
    """How long and how much each stage runs."""

    readings: int  # in the history device, whose whole listing the slow reader reads
    warmup: int
    seconds: int  # wrk, per app and round
    rounds: int  # the candidates take turns, so that noise on the machine hits them alike
    window: int  # seconds of probing per slow-client window
    counts: tuple  # slow clients per window
    read_rate: int  # bytes a second for the slow reader


FULL = Settings(readings=500_000, warmup=2, seconds=10, rounds=3, window=15, counts=(2, 8, 64), read_rate=1_000_000)
QUICK = Settings(readings=100_000, warmup=1, seconds=3, rounds=1, window=5, counts=(2, 64), read_rate=1_000_000)


# -- Candidates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A server design: its key for --only, its label in the table and how to start it."""

    key: str
    label: str
    launch: object  # a launcher: (port, "module:app", workers) -> launchers.Launch


CANDIDATES = (
    Candidate("gunicorn-sync", f"gunicorn, {WORKERS} sync workers", launchers.gunicorn_sync),
    Candidate("gunicorn-gthread", f"gunicorn, {WORKERS} gthread workers × {GTHREAD_THREADS} threads",
              launchers.gunicorn("--worker-class", "gthread", "--threads", str(GTHREAD_THREADS))),
    Candidate("granian", f"granian, {WORKERS} workers × 1 blocking thread, TCP", launchers.granian_direct),
    Candidate("waitress", f"waitress, 1 process × {WAITRESS_THREADS} threads",
              launchers.waitress(WAITRESS_THREADS, WAITRESS_CONNECTIONS)),
    Candidate("nginx-gunicorn", f"nginx + gunicorn, {WORKERS} sync workers",
              launchers.behind_nginx("bench/nginx_gunicorn.py", "gunicorn")),
    Candidate("nginx-uwsgi", f"nginx (least_conn) + uWSGI, uwsgi protocol, {WORKERS} workers × 1 thread",
              launchers.behind_nginx("bench/nginx_uwsgi.py", None)),
    Candidate("serve", f"python serve.py: nginx (least_conn) + granian, {WORKERS} workers × 1 thread",
              launchers.production),
)


# -- Measurements -------------------------------------------------------------------------------------


@dataclass
class Window:
    """A normal client's latency while slow clients are connected."""

    label: str
    groups: tuple  # ((kind, count), ...)
    probe: slowclients.ProbeResult | None = None
    slow: dict = field(default_factory=dict)
    recovery: float | None = None  # seconds until /health answered after the slow clients left


@dataclass
class Outcome:
    """Everything measured for one candidate."""

    candidate: Candidate
    api: launchers.Server | None = None  # the API server, running from the POST rounds to the slow clients
    post: load.LoadResult | None = None
    echo: load.LoadResult | None = None
    windows: dict = field(default_factory=dict)
    reader: slowclients.ReadResult | None = None
    reader_probe: slowclients.ProbeResult | None = None
    error: str | None = None


def windows_for(settings):
    """Return the slow-client windows: none, each kind and count, and the largest of both at once."""
    windows = [Window("alone", ())]
    for kind in ("header", "body"):
        windows += [Window(f"{count} slow {PLURAL[kind]}", ((kind, count),)) for count in settings.counts]
    top = max(settings.counts)
    windows.append(Window(f"{top} slow headers + {top} slow bodies", (("header", top), ("body", top))))
    return windows


def run_window(server, window, settings):
    """Probe the server for one window while the window's slow clients are connected."""
    note(f"  {window.label}: probing for {settings.window} s")
    with slowclients.SlowClients(server.port, window.groups) as slow:
        window.probe = slowclients.probe_in_process(server.port, settings.window)
    window.slow = slow.stats
    began = time.monotonic()
    window.recovery = time.monotonic() - began if server.wait_healthy(60) else None
    if window.probe is None:
        note("    the probe overran its deadline and was stopped")
    else:
        note(f"    {describe_probe(window.probe)}")


def run_reader(server, settings, rows):
    """Read the history device's whole listing at a steady rate, probing the server meanwhile."""
    expected = rows * 88.4 / settings.read_rate  # seconds, at about 88.4 bytes per reading
    note(f"  slow reader: the listing of {rows:,} readings at {settings.read_rate / 1e6:.1f} MB/s "
         f"(about {expected:.0f} s)")
    path = f"/devices/{fixtures.HISTORY_DEVICE}/readings/"
    max_seconds = 3 * expected + 60
    reader = slowclients.start_slow_read(server.port, path, settings.read_rate, max_seconds)
    probe = slowclients.probe_in_process(server.port, settings.window)
    result = reader.result(max_seconds + 120)
    note(f"    {describe_read(result, rows)}")
    server.wait_healthy(60)
    return result, probe


def start_servers(outcome, database_url, settings, launched):
    """Start a candidate with the API and with the echo app and warm both up; return the echo server."""
    candidate = outcome.candidate
    api, echo = (launchers.new_server(f"{candidate.key}-{kind}", candidate.launch, wsgi_app, WORKERS,
                                      log_path=fixtures.DATA_DIR / f"servers-{candidate.key}-{kind}.log",
                                      DATABASE_URL=database_url, CANARY_AUTH="open")
                 for kind, wsgi_app in (("api", "app:app"), ("echo", "echo_app:app")))
    launched += [api, echo]
    note(f"starting {candidate.label}")
    try:
        for server in (api, echo):
            server.start()
            load.run_wrk(server.port, POST_PATH, settings.warmup)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        fail(outcome, error, api, echo)
        return None
    outcome.api = api
    return echo


def fail(outcome, error, *servers):
    """Record why a candidate could not be measured, and stop its servers."""
    outcome.error = str(error).splitlines()[0][:200]
    note(f"  {outcome.candidate.label} FAILED: {error}")
    for server in servers:
        server.stop()
    outcome.api = None


def measure_posts(outcomes, database_url, settings, launched):
    """Run every candidate's API and echo app at once and give them single-POST wrk rounds in turn."""
    echoes = {outcome.candidate.key: start_servers(outcome, database_url, settings, launched)
              for outcome in outcomes}
    rounds = {outcome.candidate.key: ([], []) for outcome in outcomes}
    try:
        for round_number in range(1, settings.rounds + 1):
            for outcome in outcomes:
                key, api, echo = outcome.candidate.key, outcome.api, echoes[outcome.candidate.key]
                if api is None:
                    continue
                note(f"single POST, round {round_number} of {settings.rounds}: {outcome.candidate.label}, "
                     f"{settings.seconds} s of wrk on the API, then on the echo app")
                try:
                    for server, results in zip((api, echo), rounds[key]):
                        results.append(load.run_wrk(server.port, POST_PATH, settings.seconds))
                except (subprocess.SubprocessError, OSError) as error:
                    fail(outcome, error, api, echo)
                    continue
                post, ceiling = rounds[key][0][-1], rounds[key][1][-1]
                note(f"  API {post.rate:,.0f} req/s, p99 {post.p99_ms:.2f} ms, {post.errors} errors; "
                     f"echo {ceiling.rate:,.0f} req/s")
    finally:
        for echo in echoes.values():
            if echo is not None:
                echo.stop()
    for outcome in outcomes:
        if outcome.api is not None:
            outcome.post, outcome.echo = (load.combine(results) for results in rounds[outcome.candidate.key])


def measure_slow_clients(outcome, settings, rows):
    """Probe the candidate's API server under every slow-client window and a slow reader, then stop it."""
    note(f"slow clients: {outcome.candidate.label}")
    api = outcome.api
    try:
        for window in windows_for(settings):
            run_window(api, window, settings)
            outcome.windows[window.label] = window
        outcome.reader, outcome.reader_probe = run_reader(api, settings, rows)
    except (RuntimeError, OSError) as error:
        fail(outcome, error)
    finally:
        api.stop()


# -- Reporting ----------------------------------------------------------------------------------------


def duration(seconds):
    """Format seconds for a table cell: ms below one second, s above, ∞ for a failure."""
    if seconds is None or math.isnan(seconds):
        return "–"
    if math.isinf(seconds):
        return "∞"
    if seconds < 0.01:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.1f} s"


def describe_probe(probe):
    """Describe a probe's figures in one line."""
    if probe is None:
        return "probe overran its deadline"
    text = (f"p50 {duration(probe.percentile(0.5))}, p99 {duration(probe.percentile(0.99))}, "
            f"longest answer {duration(probe.longest)}; {probe.count} requests, {probe.failed} failed, "
            f"{probe.slow} over {probe.slow_after:.0f} s")
    if probe.failures:
        text += " (" + ", ".join(f"{why} ×{count}" for why, count in probe.failures.most_common()) + ")"
    return text


def window_cell(window):
    """Return a window's table cell: the probe's p99, or how many probe requests stalled."""
    probe = window.probe
    if probe is None:
        return "hung"
    if probe.stalls:
        return f"**stall {probe.stalls}/{probe.count}**"
    return duration(probe.percentile(0.99))


def describe_read(result, rows):
    """Describe what the slow reader received."""
    if result is None:
        return "the reader overran its deadline"
    whole = result.valid_json and result.rows == rows
    text = (f"{'complete' if whole else 'INCOMPLETE'}: status {result.status}, {result.received / 1e6:.1f} MB "
            f"in {result.seconds:.0f} s, " + (f"valid JSON, {result.rows:,} rows" if result.valid_json
                                              else "not valid JSON"))
    return text + (f" ({result.error})" if result.error else "")


def reader_cell(result, probe, rows):
    """Return the slow reader's table cell, with the probe's figure while it read."""
    if result is None:
        text = "hung"
    elif result.valid_json and result.rows == rows:
        text = f"complete, {result.received / 1e6:.1f} MB in {result.seconds:.0f} s"
    else:
        text = f"**cut**: {result.received / 1e6:.1f} MB in {result.seconds:.0f} s, not valid JSON"
    return f"{text}; probe {window_cell(Window('reader', (), probe))}"


def render(table):
    """Return rows of cells as an aligned markdown table, the first row being the header."""
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def results_table(outcomes, settings, rows):
    """Return the comparison table: one row per candidate."""
    counts = " / ".join(str(count) for count in settings.counts)
    top = max(settings.counts)
    header = ["Server", "POST req/s", "POST p99", "vs gunicorn sync", "Echo req/s", "Probe alone p99",
              f"Slow headers {counts}: probe p99", f"Slow bodies {counts}: probe p99",
              f"{top} + {top} at once", f"Slow reader ({settings.read_rate / 1e6:.0f} MB/s); probe p99 meanwhile"]
    table = [header]
    baseline = next((outcome.post.rate for outcome in outcomes
                     if outcome.candidate.key == "gunicorn-sync" and outcome.post), None)
    for outcome in outcomes:
        if outcome.post is None:
            table.append([outcome.candidate.label, f"failed: {outcome.error}"] + [""] * (len(header) - 2))
            continue
        post, windows = outcome.post, outcome.windows

        def cells(kind, windows=windows):
            labels = [f"{count} slow {PLURAL[kind]}" for count in settings.counts]
            return " / ".join(window_cell(windows[label]) if label in windows else "–" for label in labels)

        both = windows.get(f"{top} slow headers + {top} slow bodies")
        read = outcome.reader or outcome.reader_probe  # the reader ran, though either may have hung
        table.append([
            outcome.candidate.label,
            f"{post.rate:,.0f}" + (f" ({post.errors} errors)" if post.errors else ""),
            f"{post.p99_ms:.1f} ms",
            f"{post.rate / baseline:.2f}×" if baseline else "–",
            f"{outcome.echo.rate:,.0f}" if outcome.echo else "–",
            window_cell(windows["alone"]) if "alone" in windows else "–",
            cells("header"),
            cells("body"),
            window_cell(both) if both else "–",
            reader_cell(outcome.reader, outcome.reader_probe, rows) if read else "–",
        ])
    return render(table)


def details(outcomes, rows):
    """Return a per-candidate account of every window and the slow reader."""
    lines = []
    for outcome in outcomes:
        lines.append(f"**{outcome.candidate.label}**" + (f" — failed: {outcome.error}" if outcome.error else ""))
        if outcome.post:
            lines.append(f"- single POST: {outcome.post.rate:,.0f} req/s, p50 {outcome.post.p50_ms:.2f} ms, "
                         f"p99 {outcome.post.p99_ms:.2f} ms, {outcome.post.errors} errors of "
                         f"{outcome.post.requests:,}; echo {outcome.echo.rate:,.0f} req/s, "
                         f"p99 {outcome.echo.p99_ms:.2f} ms")
        for window in outcome.windows.values():
            line = f"- {window.label}: {describe_probe(window.probe)}"
            for kind, stats in window.slow.items():
                line += f"; slow {PLURAL[kind]}: " + (stats.describe() if stats else "their process was killed")
            if window.recovery is None:
                line += "; /health did not answer within 60 s after"
            elif window.recovery > 0.5:
                line += f"; /health answered again {window.recovery:.1f} s after the slow clients left"
            lines.append(line)
        if outcome.reader or outcome.reader_probe:
            lines.append(f"- slow reader: {describe_read(outcome.reader, rows)}; "
                         f"meanwhile the probe: {describe_probe(outcome.reader_probe)}")
        lines.append("")
    return "\n".join(lines)


def machine_line(load_start, load_end):
    """Describe the machine, the software and the load the figures come from."""
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    return (f"Machine: {machine()} (file in WAL mode); gunicorn "
            f"{version('gunicorn')}, granian {version('granian')}, waitress {version('waitress')}, "
            f"uWSGI {version('pyuwsgi')}, nginx {nginx}; "
            f"load: wrk, 2 threads, 16 connections; load average {load_start:.2f} at start, "
            f"{load_end:.2f} at the end; {now()}")


def method_note(settings):
    """Explain the columns in a few lines."""
    return (f"POST: wrk, 2 threads, 16 connections, {settings.rounds} × {settings.seconds} s of single-reading "
            f"POSTs (bench/post_reading.lua), the candidates taking turns each round; req/s over all rounds, "
            f"p99 of the worst round; echo: the same against bench/echo_app.py under the same server "
            f"settings. Probe: every 0.2 s a POST of one reading then GET /health, each on a fresh "
            f"connection, for {settings.window} s; p99 over both, a stall is a request that failed "
            f"(10 s timeout, error or wrong status) or took over 5 s. Slow headers send a request's headers "
            f"one byte a second; slow bodies send whole headers with Content-Length: "
            f"{slowclients.BODY_LENGTH}, then one body byte a second; a slow client the server drops "
            f"reconnects at once. Slow reader: GET of the {fixtures.HISTORY_DEVICE} listing read at "
            f"{settings.read_rate / 1e6:.1f} MB/s through a 64 KB receive buffer.")


def parse_args():
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer clients, for a trial")
    parser.add_argument("--only", help="comma-separated candidate keys: "
                        + ", ".join(candidate.key for candidate in CANDIDATES))
    return parser.parse_args()


def main():
    """Generate the data, give the candidates POST rounds in turn, then slow clients one by one; print the table."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    settings = QUICK if args.quick else FULL
    candidates = CANDIDATES
    if args.only:
        keys = args.only.split(",")
        unknown = set(keys) - {candidate.key for candidate in CANDIDATES}
        if unknown:
            raise SystemExit(f"unknown candidates: {', '.join(sorted(unknown))}")
        candidates = [candidate for candidate in CANDIDATES if candidate.key in keys]
    if not load.wrk_available():
        raise SystemExit("wrk is not installed; install it first (Debian: apt-get install wrk)")
    load_start = os.getloadavg()[0]  # other work on the machine skews the figures

    url = f"sqlite:///{fixtures.DATA_DIR / 'servers.db'}"
    note(f"generating {settings.readings:,} readings")
    fixtures.generate(url, settings.readings)
    os.sync()  # otherwise the kernel writes the new data back during the first measurement

    outcomes = [Outcome(candidate) for candidate in candidates]
    launched = []
    try:
        measure_posts(outcomes, url, settings, launched)
        for outcome in outcomes:
            if outcome.api is not None:
                measure_slow_clients(outcome, settings, settings.readings)
    finally:
        for server in launched:
            server.stop()
    print(machine_line(load_start, os.getloadavg()[0]))
    print()
    print(results_table(outcomes, settings, settings.readings))
    print()
    print(method_note(settings))
    print()
    print(details(outcomes, settings.readings))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        note("interrupted; the servers were stopped")
        sys.exit(130)
