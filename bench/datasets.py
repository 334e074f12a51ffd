"""The two datasets of the rollups' benchmark, as the previous release left its databases: readings, no rollups.

A device with 5 years of one reading a minute of each type (5,256,000 readings), and a fleet of
100,000 devices with 288 temperature readings each in one day (28,800,000 readings). Each is
generated once into a pristine copy (a SQLite file, or a PostgreSQL database used as a template)
that every run starts from afresh.
"""
import math
import random
import shutil
import sqlite3
import time
from pathlib import Path

import launchers
import psycopg
from sqlalchemy.engine import make_url
from table import note

DEVICE = "bench-5y"
DEVICE_START = 1_577_836_800  # 2020-01-01T00:00:00Z
DEVICE_DAYS = 5 * 365
FLEET_DEVICES = 100_000
FLEET_DAY = 1_717_200_000 - 1_717_200_000 % 86_400  # 2024-06-01T00:00:00Z
FLEET_READINGS = 288  # one every 5 minutes
DATASETS = ("device", "fleet")
# The previous release's schema (b19ead9): what its databases hold when the upgrade starts.
PREVIOUS_SCHEMA = [
    "CREATE TABLE readings (id {id}, device_uuid VARCHAR(64) NOT NULL, type VARCHAR(16) NOT NULL, "
    "value INTEGER NOT NULL, date_created BIGINT NOT NULL{unique})",
    "CREATE TABLE tokens (id {token_id}, digest VARCHAR(64) NOT NULL UNIQUE, kind VARCHAR(8) NOT NULL, "
    "device_uuid VARCHAR(64), label VARCHAR(200), created_at BIGINT NOT NULL, revoked_at BIGINT)",
]
INDEX = "CREATE INDEX ix_readings_device_type_time_value ON readings (device_uuid, type, date_created, value)"


def device_rows():
    """Yield the 5-year device's readings: a day's swing and slow drift in temperature, humidity around 45%."""
    rng = random.Random(20200101)
    drift = {"temperature": 20.0, "humidity": 45.0}
    for minute in range(DEVICE_DAYS * 1440):
        date = DEVICE_START + minute * 60
        for kind, swing in (("temperature", 3.0), ("humidity", 8.0)):
            drift[kind] += rng.gauss(0, 0.02) - (drift[kind] - (20.0 if kind == "temperature" else 45.0)) * 0.0005
            value = drift[kind] + swing * math.sin(2 * math.pi * (minute % 1440) / 1440) + rng.gauss(0, 0.6)
            yield DEVICE, kind, min(100, max(0, round(value))), date


def fleet_rows():
    """Yield the fleet's readings: each device around a level of its own, in device order."""
    rng = random.Random(20240601)
    for number in range(FLEET_DEVICES):
        device, level = f"fleet-{number:05d}", rng.uniform(16, 26)
        for index in range(FLEET_READINGS):
            swing = 2.0 * math.sin(2 * math.pi * index / FLEET_READINGS)
            yield device, "temperature", round(level + swing + rng.gauss(0, 0.7)), FLEET_DAY + index * 300


ROWS = {"device": device_rows, "fleet": fleet_rows}
COUNTS = {"device": DEVICE_DAYS * 1440 * 2, "fleet": FLEET_DEVICES * FLEET_READINGS}


def pristine_sqlite(name):
    """Return the pristine SQLite file of a dataset, generating it the first time."""
    path = launchers.DATA_DIR / f"pristine-{name}.db"
    if path.exists():
        return path
    note(f"generating the {name} dataset: {COUNTS[name]:,} readings into {path.name} (once)")
    began, partial = time.monotonic(), path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    connection = sqlite3.connect(partial, isolation_level=None)
    connection.execute("PRAGMA journal_mode = OFF")
    for statement in PREVIOUS_SCHEMA:
        connection.execute(statement.format(id="INTEGER PRIMARY KEY", token_id="INTEGER PRIMARY KEY", unique=""))
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO readings (device_uuid, type, value, date_created) VALUES (?, ?, ?, ?)",
                           ROWS[name]())
    connection.execute("COMMIT")
    connection.execute(INDEX)
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.close()
    partial.rename(path)
    note(f"generated in {time.monotonic() - began:.0f} s")
    return path


def fresh_sqlite(name):
    """Return the URL of a fresh copy of a dataset's pristine SQLite file."""
    source, target = pristine_sqlite(name), launchers.DATA_DIR / f"run-{name}.db"
    for suffix in ("", "-wal", "-shm", "-writers"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


def _libpq(url, database=None):
    url = make_url(url).set(drivername="postgresql")
    return (url.set(database=database) if database else url).render_as_string(hide_password=False)


def pristine_postgres(url, name):
    """Return the name of a dataset's pristine PostgreSQL database, generating it the first time."""
    database = f"canary_pristine_{name}"
    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return database
        note(f"generating the {name} dataset: {COUNTS[name]:,} readings into PostgreSQL {database} (once)")
        began = time.monotonic()
        admin.execute(f'CREATE DATABASE "{database}_partial"')
    with psycopg.connect(_libpq(url, f"{database}_partial"), autocommit=True) as connection:
        for statement in PREVIOUS_SCHEMA:
            connection.execute(statement.format(id="BIGINT GENERATED BY DEFAULT AS IDENTITY",
                                                token_id="SERIAL PRIMARY KEY",
                                                unique=", CONSTRAINT uq_readings_date_created_id "
                                                       "UNIQUE (date_created, id)"))
        with connection.cursor().copy("COPY readings (device_uuid, type, value, date_created) FROM STDIN") as copy:
            for row in ROWS[name]():
                copy.write_row(row)
        connection.execute(INDEX)
        connection.execute("VACUUM ANALYZE readings")
    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}_partial" RENAME TO "{database}"')
    note(f"generated in {time.monotonic() - began:.0f} s")
    return database


def fresh_postgres(url, name):
    """Return the URL of a fresh copy of a dataset's pristine PostgreSQL database."""
    pristine, target = pristine_postgres(url, name), f"canary_run_{name}"
    with psycopg.connect(_libpq(url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{pristine}"')
    return make_url(url).set(database=target).render_as_string(hide_password=False)
