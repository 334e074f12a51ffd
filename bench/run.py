"""Benchmark the Canary readings API through its production command and print one markdown table.

    python bench/run.py [--database-url URL] [--postgres-url URL] [--quick] [--workers N] [--python-load]

By default the data goes to a fresh SQLite file in bench/data/. With a PostgreSQL URL the readings
table of that database is dropped and recreated, and no targets apply. --postgres-url adds the
production command on PostgreSQL (whose readings table is likewise recreated) to a SQLite run's
single-POST rounds.
"""
import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass

import fixtures
import launchers
import load
import stages_ingest
import stages_operations
import stages_queries
import stages_safety
from table import machine, note, now, render, version

READINGS = 1_000_000


@dataclass(frozen=True)
class Settings:
    """How long and how much each stage runs."""

    seconds: int  # single-POST load per server and round
    rounds: int  # the servers take turns, so that noise on the machine hits all alike
    warmup: int
    exact_posts: int
    batches: int  # POSTs of 1,000 readings
    metric_requests: int
    probe_seconds: int  # a normal client's probe among the slow clients
    read_seconds: int  # the slow reader takes at least this long over the whole listing
    scrape_after: int  # requests before the timed scrapes of /metrics
    idempotency_keys: int


FULL = Settings(seconds=10, rounds=5, warmup=2, exact_posts=20_000, batches=400, metric_requests=20,
                probe_seconds=15, read_seconds=90, scrape_after=1_000_000, idempotency_keys=10_000)
QUICK = Settings(seconds=3, rounds=1, warmup=1, exact_posts=2_000, batches=40, metric_requests=5,
                 probe_seconds=5, read_seconds=10, scrape_after=50_000, idempotency_keys=1_000)


def machine_line(database_versions, workers, use_wrk, load_average):
    """Describe the machine, the software and the set-up the figures come from."""
    return (f"Machine: {machine()}; database: "
            f"{' and '.join(database_versions)}; server: python serve.py (nginx + granian {version('granian')}) "
            f"with WEB_CONCURRENCY={workers}, against gunicorn {version('gunicorn')} with {workers} sync workers "
            f"serving the first release ({launchers.FIRST_RELEASE[:7]}) and today's app; "
            f"load: {'wrk' if use_wrk else 'Python load generator'}; load average {load_average:.2f} at start; {now()}")


def is_postgres(url):
    """Tell whether a database URL names PostgreSQL."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def parse_args():
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: a new SQLite file in bench/data/)")
    parser.add_argument("--postgres-url", help="also run the single-POST rounds on this PostgreSQL database "
                        "(its tables are dropped and made anew)")
    parser.add_argument("--quick", action="store_true", help="shorter runs, for trying the benchmark out")
    parser.add_argument("--workers", type=int, default=2, help="app worker processes per server (default 2)")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator, not wrk")
    args = parser.parse_args()
    if args.postgres_url and (not is_postgres(args.postgres_url) or is_postgres(args.database_url or "")):
        parser.error("--postgres-url takes a PostgreSQL URL, and adds it to a run on SQLite")
    return args


def generate(url):
    """Recreate a benchmark database with the history device's readings."""
    note(f"generating {READINGS:,} readings")
    began = time.perf_counter()
    fixtures.generate(url, READINGS)
    note(f"generated in {time.perf_counter() - began:.1f} s")


def main():
    """Generate the data, start the production server, run every stage and print the table."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    settings = QUICK if args.quick else FULL
    url = args.database_url or fixtures.default_url()
    use_wrk = load.wrk_available() and not args.python_load
    load_average = os.getloadavg()[0]  # other work on the machine skews the figures

    for database_url in filter(None, (url, args.postgres_url)):
        generate(database_url)
    # Otherwise the kernel writes the new data back during the first round, stalling its fsyncs.
    os.sync()

    database = fixtures.Database(url)
    versions = [database.version()]
    if args.postgres_url:
        postgres = fixtures.Database(args.postgres_url)
        versions.append(postgres.version() + " for the PostgreSQL rounds")
        postgres.close()
    api = launchers.new_server("api", launchers.production, "app:app", args.workers,
                               DATABASE_URL=url, CANARY_AUTH="open")
    previous = launchers.new_server("previous-release", launchers.previous_release, "app:app", args.workers,
                                    DATABASE_URL=url, CANARY_AUTH="open")
    try:
        api.start()
        previous.start()
        rows = stages_ingest.bench_single_post(api, previous, url, database, args.postgres_url, args.workers,
                                               settings, use_wrk)
        rows += stages_ingest.bench_exactness(api, database, settings)
        rows += stages_ingest.bench_batch(api, previous, database, settings)
        previous.stop()
        rows += stages_queries.bench_metrics(api, database, settings)
        rows += stages_queries.bench_streaming(api, READINGS)
        rows += stages_queries.bench_series(api, database, settings)
        rows += stages_queries.bench_summary(url, args.workers, settings)
        rows += stages_safety.bench_slow_clients(api, settings)
        rows += stages_safety.bench_slow_reader(api, url, READINGS, settings)
        rows += stages_safety.bench_malformed(api)
        rows += stages_safety.bench_anonymous_bursts(url)
        rows += stages_safety.bench_memory(url)
        rows += stages_operations.bench_scrape(url, args.workers, settings.scrape_after)
        rows += stages_operations.bench_rate_limit(url, args.workers)
        for label, database_url in (("SQLite", url), ("PostgreSQL", args.postgres_url)):
            if database_url:
                rows += stages_operations.bench_idempotency(database_url, label, args.workers,
                                                            settings.idempotency_keys)
        rows += stages_operations.bench_schemathesis(url)
    finally:
        api.stop()
        previous.stop()
        database.close()
    print(machine_line(versions, args.workers, use_wrk, load_average))
    print()
    print(render(rows, with_targets=not database.is_postgres))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        note("interrupted; the servers were stopped")
        sys.exit(130)
