"""Ingest stages: single-reading POSTs to several servers in alternating rounds, exactness, batch ingest."""
import hashlib
import secrets
import time
from dataclasses import dataclass, field

import launchers
import load
from table import Row, load_figures, note

FLEET = 10_000  # devices the single POSTs of the fleet-shaped rows are spread over


@dataclass
class Contender:
    """A server in the single-POST rounds, the device it posts readings for, and the token it sends, if any."""

    label: str
    server: launchers.Server
    device: str
    token: str | None = None
    devices: int = 1  # or spread over this many devices, as a fleet posts
    results: list = field(default_factory=list)

    def drive(self, seconds, use_wrk):
        """POST single readings for `seconds` on 16 connections and return the load result."""
        if use_wrk:
            path = f"/devices/{self.device}-_N_/readings/" if self.devices > 1 else f"/devices/{self.device}/readings/"
            return load.run_wrk(self.server.port, path, seconds, token=self.token, devices=self.devices)
        headers = {**load.HEADERS, **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        return load.python_load(self.server.port, f"/devices/{self.device}/readings/", load.reading_body,
                                seconds=seconds, headers=headers)


def store_device_token(database, device):
    """Store a new device token for `device` in the database, as `flask tokens create` would; return it."""
    token = "cnry_" + secrets.token_urlsafe(32)
    database.query("INSERT INTO tokens (digest, kind, device_uuid, label, created_at) VALUES (?, ?, ?, ?, ?)",
                   (hashlib.sha256(token.encode()).hexdigest(), "device", device, "benchmark", int(time.time())))
    return token


def alternate(contenders, settings, use_wrk):
    """Warm every contender up, then give each the same rounds in turn, so that noise hits them all alike.

    Each round starts one contender later than the last, so that none always follows the same one.
    """
    for contender in contenders:
        contender.drive(settings.warmup, use_wrk)
    for round_number in range(1, settings.rounds + 1):
        shift = (round_number - 1) % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            note(f"single POST: {contender.label}, round {round_number} of {settings.rounds}, {settings.seconds} s")
            result = contender.drive(settings.seconds, use_wrk)
            note(f"  {result.rate:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                 f"{result.errors} errors")
            contender.results.append(result)


def bench_single_post(api, previous, url, database, postgres_url, workers, settings, use_wrk):
    """Compare single-reading POSTs to the production API with the echo app, gunicorn sync, tokens mode, PostgreSQL.

    `api` is the running production server on `url`, `previous` the previous release's production
    command running on the same database; the others run for this stage only: the bare
    echo app through the production command, the service as first released (its own code under
    gunicorn's sync workers) and gunicorn's sync workers serving today's app, both on the same
    database, the production command in tokens mode (each request sending a device token) and,
    given `postgres_url`, the production command on PostgreSQL.
    """
    production = {"DATABASE_URL": url, "CANARY_AUTH": "open"}
    others = {
        "defaults": launchers.new_server("api-defaults", launchers.production, "app:app", workers, rate_limits=True,
                                         **production),
        "off": launchers.new_server("api-off", launchers.production, "app:app", workers, **production,
                                    CANARY_METRICS="false", CANARY_REQUEST_LOG=""),
        "echo": launchers.new_server("echo", launchers.production, "echo_app:app", workers, **production),
        "first": launchers.new_server("first-release", launchers.gunicorn_first_release, "app:app", workers,
                                      **production),
        "sync": launchers.new_server("gunicorn-sync", launchers.gunicorn_sync, "app:app", workers, **production),
        "tokens": launchers.new_server("api-tokens", launchers.production, "app:app", workers,
                                       DATABASE_URL=url, CANARY_AUTH="tokens"),
    }
    if postgres_url:
        others["postgres"] = launchers.new_server("api-postgres", launchers.production, "app:app", workers,
                                                  DATABASE_URL=postgres_url, CANARY_AUTH="open")
    contenders = {
        "api": Contender("readings API, production command", api, "bench-post"),
        "previous": Contender(f"readings API as of {launchers.PREVIOUS_RELEASE[:7]} (the previous release), its "
                              "production command", previous, "bench-post-previous"),
        "echo": Contender("bare Flask echo, production command", others["echo"], "bench-post"),
        "first": Contender(f"readings API as first released ({launchers.FIRST_RELEASE[:7]}), gunicorn {workers} "
                           "sync workers", others["first"], "bench-post-first"),
        "sync": Contender(f"readings API of today, gunicorn {workers} sync workers", others["sync"],
                          "bench-post-sync"),
        "tokens": Contender("readings API, tokens mode with a device token", others["tokens"], "bench-tokens",
                            store_device_token(database, "bench-tokens")),
        "defaults": Contender(f"readings API, production command with its defaults: metrics, request log, rate "
                              f"limits, over {FLEET:,} devices", others["defaults"], "bench-defaults", devices=FLEET),
        "off": Contender(f"readings API, production command without metrics, request log or rate limits, over "
                         f"{FLEET:,} devices", others["off"], "bench-off", devices=FLEET),
        "previous_fleet": Contender(f"readings API as of {launchers.PREVIOUS_RELEASE[:7]}, its production command, "
                                    f"over {FLEET:,} devices", previous, "bench-fleet-previous", devices=FLEET),
    }
    if postgres_url:
        contenders["postgres"] = Contender("readings API on PostgreSQL, production command", others["postgres"],
                                           "bench-post")
    try:
        for server in others.values():
            server.start()
        alternate(list(contenders.values()), settings, use_wrk)
    finally:
        for server in others.values():
            server.stop()
    results = {key: load.combine(contender.results) for key, contender in contenders.items()}
    tool = "wrk" if use_wrk else "Python load generator"
    return single_post_rows(results, contenders, f"{tool}, 16 connections, {settings.rounds} × {settings.seconds} s")


def single_post_rows(results, contenders, load_shape):
    """Return the single-POST rows: each server's figures, the ratios with their targets, and the errors."""
    api, echo, first, sync, tokens = (results[key] for key in ("api", "echo", "first", "sync", "tokens"))

    def figures(key, target="", ok=None):
        errors = results[key].errors
        measured = load_figures(results[key]) + (f" · {errors:,} errors" if errors else "")
        return Row(f"Single POST: {contenders[key].label} ({load_shape})", measured, target, ok)

    previous = results["previous"]
    rows = [
        figures("api", "p99 ≤ 25 ms", api.p99_ms <= 25),
        figures("previous"),
        Row(f"Single POST: production command / {launchers.PREVIOUS_RELEASE[:7]} req/s",
            f"{api.rate / previous.rate:.2f}×", "≥ 0.9×", api.rate >= 0.9 * previous.rate),
        figures("echo"),
        Row("Single POST: API / echo req/s", f"{api.rate / echo.rate:.0%}", "≥ 60%", api.rate >= 0.60 * echo.rate),
        figures("first"),
        Row("Single POST: production command / first release under gunicorn sync req/s",
            f"{api.rate / first.rate:.2f}×", "≥ 1.5×", api.rate >= 1.5 * first.rate),
        figures("sync"),
        Row("Single POST: production command / today's app under gunicorn sync req/s (the server alone)",
            f"{api.rate / sync.rate:.2f}×"),
        figures("tokens"),
        Row("Single POST: tokens / open req/s", f"{tokens.rate / api.rate:.0%}", "≥ 90%",
            tokens.rate >= 0.90 * api.rate),
    ]
    if "postgres" in results:
        postgres = results["postgres"]
        rows += [figures("postgres", "p99 ≤ 50 ms", postgres.p99_ms <= 50),
                 Row("Single POST: PostgreSQL / SQLite req/s", f"{postgres.rate / api.rate:.0%}", "≥ 80%",
                     postgres.rate >= 0.80 * api.rate)]
    defaults, off = results["defaults"], results["off"]
    rows += [figures("defaults", "p99 ≤ 25 ms", defaults.p99_ms <= 25), figures("off"),
             Row("Single POST: with metrics, request log and rate limits / without them req/s",
                 f"{defaults.rate / off.rate:.2f}×", "≥ 0.9×", defaults.rate >= 0.9 * off.rate),
             figures("previous_fleet"),
             Row(f"Single POST over {FLEET:,} devices: without metrics, request log or rate limits / "
                 f"{launchers.PREVIOUS_RELEASE[:7]} req/s", f"{off.rate / results['previous_fleet'].rate:.2f}×",
                 "≥ 0.9×", off.rate >= 0.9 * results["previous_fleet"].rate)]
    production = [key for key in results if key not in ("first", "sync")]
    errors = sum(results[key].errors for key in production)
    requests = sum(results[key].requests for key in production)
    rows.append(Row("Single POST: errors (production command)", f"{errors:,} of {requests:,} requests", "0",
                    errors == 0))
    return rows


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


def bench_batch(api, previous, database, settings, clients=4, rounds=2):
    """POST arrays of 1,000 readings from several clients, to the API and the previous release in turns.

    Each posts its own device's batches, in `rounds` rounds of settings.batches / rounds POSTs each.
    """
    note(f"batch ingest: {settings.batches} POSTs of 1,000 readings from {clients} clients, to each server")
    totals = {}
    for round_number in range(rounds):
        for name, server in ((("api", api), ("previous", previous)) if round_number % 2 == 0
                             else (("previous", previous), ("api", api))):
            result = load.python_load(server.port, f"/devices/bench-batch-{name}/readings/",
                                      lambda worker, index, name=name, round_number=round_number: load.batch_body(
                                          worker, round_number * 10**4 + index),
                                      connections=clients, total=settings.batches // rounds)
            ok, seconds, errors = totals.get(name, (0, 0.0, 0))
            totals[name] = (ok + result.ok, seconds + result.seconds, errors + result.errors)
    rows, rates = [], {}
    for name, label in (("api", "production command"),
                        ("previous", f"{launchers.PREVIOUS_RELEASE[:7]}, its production command")):
        ok, seconds, errors = totals[name]
        stored = database.query("SELECT COUNT(*) FROM readings WHERE device_uuid = ?", (f"bench-batch-{name}",))[0][0]
        rates[name] = ok * 1000 / seconds
        exact = errors == 0 and stored == ok * 1000
        rows.append(Row(f"Batch ingest: 1,000 readings per POST, {clients} clients, {label}",
                        f"{rates[name]:,.0f} readings/s ({stored:,} readings stored in {seconds:.1f} s, "
                        f"{errors} errors)", "≥ 40,000 readings/s" if name == "api" else "",
                        (rates[name] >= 40_000 and exact) if name == "api" else None))
    rows.append(Row(f"Batch ingest: production command / {launchers.PREVIOUS_RELEASE[:7]} readings/s",
                    f"{rates['api'] / rates['previous']:.2f}×", "≥ 0.75×", rates["api"] >= 0.75 * rates["previous"]))
    return rows
