"""Benchmark fixtures: the generated databases and a direct connection to them."""
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "bench" / "data"
HISTORY_DEVICE = "bench-history"
HISTORY_START = 1_672_531_200  # 2023-01-01T00:00:00Z
YEAR = 365 * 86_400
READING_TYPES = ("temperature", "humidity")
INSERT = "INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)"


class Database:
    """A direct connection to the benchmark database, SQLite or PostgreSQL, in autocommit mode."""

    def __init__(self, url):
        self.url = make_url(url)
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        if self.is_postgres:
            libpq_url = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.connection = psycopg.connect(libpq_url, autocommit=True)
        else:
            self.connection = sqlite3.connect(self.url.database, isolation_level=None)

    def query(self, sql, params=()):
        """Run one statement written with ? placeholders and return its rows."""
        if self.is_postgres:
            sql = sql.replace("?", "%s")
        cursor = self.connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def version(self):
        """Describe the database engine."""
        if self.is_postgres:
            return "PostgreSQL " + self.query("SHOW server_version")[0][0].split()[0]
        return "SQLite file in WAL mode"

    def pending_readings(self):
        """Return how many stored readings the app has not yet folded into its rollups, or None before its schema."""
        try:
            if self.is_postgres:
                return self.query("SELECT count(*) FROM rollup_log")[0][0]
            return self.query("SELECT coalesce((SELECT max(rowid) FROM readings), 0) - coalesce(folded_rowid, 0) "
                              "FROM rollup_state")[0][0]
        except (sqlite3.Error, psycopg.Error, IndexError):
            return None

    def close(self):
        """Close the connection."""
        self.connection.close()


def default_url():
    """Return the URL of the SQLite file the benchmark uses by default."""
    return f"sqlite:///{DATA_DIR / 'bench.db'}"


def history_rows(count, seed):
    """Yield one device's readings: alternating types, random values, one year in time order."""
    rng = random.Random(seed)
    step = YEAR / count
    for index in range(count):
        yield HISTORY_DEVICE, READING_TYPES[index % 2], rng.randint(0, 100), HISTORY_START + int(index * step)


def create_schema(url):
    """Create the app's schema in a database, as its first request would."""
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    program = "from app import app; app.app_context().push(); app.extensions['canary_schema'].ensure()"
    subprocess.run([sys.executable, "-c", program], cwd=REPO, env=env, check=True, timeout=300)


def reset_schema(database, schema):
    """Empty a PostgreSQL schema of every table, trigger function and migration stamp, so the app makes it anew."""
    database.query(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    database.query(f'CREATE SCHEMA "{schema}"')


def generate(url, count, seed=20240101):
    """Recreate the database with the app's schema, bulk-load the history, then ANALYZE."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        database = Database(url)
        reset_schema(database, "public")
        database.close()
    create_schema(url)
    database = Database(url)
    try:
        rows = history_rows(count, seed)
        if database.is_postgres:
            copy_sql = "COPY readings (device_uuid, type, value, date_created) FROM STDIN"
            with database.connection.cursor().copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            database.query("VACUUM ANALYZE readings")
        else:
            database.query("BEGIN")
            database.connection.executemany(INSERT, rows)
            database.query("COMMIT")
            database.query("ANALYZE")
    finally:
        database.close()


FLEET_SCHEMA = "bench_fleet"  # on PostgreSQL the fleet gets a schema of its own in the same database


def fleet_url(url):
    """Return the URL of the fleet benchmark's database, beside the history's."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return url.set(database=str(Path(url.database).with_name("fleet.db"))).render_as_string(hide_password=False)
    options = f"-csearch_path={FLEET_SCHEMA}"
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


def fleet_rows(devices, per_device, seed):
    """Yield `per_device` temperature readings for each of `devices` devices, over one year."""
    rng = random.Random(seed)
    step = YEAR // per_device
    for device in range(devices):
        for index in range(per_device):
            yield f"bench-fleet-{device:05d}", "temperature", rng.randint(0, 100), HISTORY_START + index * step


def generate_fleet(url, devices, per_device, seed=20240102):
    """Recreate the fleet database with the app's schema, bulk-load the fleet, then ANALYZE."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        database = Database(url.difference_update_query(["options"]))
        reset_schema(database, FLEET_SCHEMA)
        database.close()
    create_schema(url)
    database = Database(url)
    try:
        rows = fleet_rows(devices, per_device, seed)
        if database.is_postgres:
            copy_sql = "COPY readings (device_uuid, type, value, date_created) FROM STDIN"
            with database.connection.cursor().copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            database.query("VACUUM ANALYZE readings")
        else:
            database.query("BEGIN")
            database.connection.executemany(INSERT, rows)
            database.query("COMMIT")
            database.query("ANALYZE")
    finally:
        database.close()
