"""Storing readings: a batch in one transaction, a single reading in a commit shared with its neighbours.

Stored readings wait for a fold to count them in the rollups (canary/statistics/folding.py).
"""
import sqlalchemy as sa

from canary.database import database_file, write_transaction
from canary.ingest import idempotency
from canary.ingest.group_commit import CommitGroup
from canary.monitoring.instruments import READINGS
from models import SensorData, db

_INSERT = sa.insert(SensorData.__table__)


def insert_readings(readings, via, key=None, response=None):
    """Store readings (dicts with the four reading keys) in one transaction, with a claimed key's response."""
    with write_transaction(db.engine) as connection:
        if key is not None:
            idempotency.complete(connection, key, 201, response)
        connection.execute(_INSERT, readings)
    READINGS.labels(via).inc(len(readings))


def insert_reading(reading, key=None, response=None):
    """Store one reading, sharing its INSERT and commit with those of concurrent requests."""
    engine = db.engine
    if database_file(engine) is None and engine.dialect.name == "sqlite":
        insert_readings([reading], "single", key, response)  # an in-memory database lives on its pooled connection
        return
    CommitGroup.for_engine(engine).submit(reading, None if key is None else (key, response))
    _SINGLE.inc()


_SINGLE = READINGS.labels("single")
