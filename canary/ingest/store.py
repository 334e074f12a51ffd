"""Storing readings: a batch in one transaction, a single reading in a commit shared with its neighbours.

The rollups' triggers count what is stored; a batch on SQLite counts its readings itself instead,
as a few merged rows, since SQLite's triggers run once per row (canary/statistics/triggers.py).
"""
import sqlalchemy as sa

from canary.database import database_file, write_transaction
from canary.ingest.group_commit import CommitGroup
from canary.statistics import rollups
from models import RollupPause, SensorData, db

_INSERT = sa.insert(SensorData.__table__)


def insert_readings(readings):
    """Store readings (dicts with the four reading keys) in one transaction."""
    with write_transaction(db.engine) as connection:
        if connection.dialect.name != "sqlite" or len(readings) < 2 or not rollups.armed(connection):
            connection.execute(_INSERT, readings)
            return
        connection.execute(sa.insert(RollupPause).values(id=1))  # seen by this transaction's trigger only
        connection.execute(_INSERT, readings)
        connection.execute(sa.delete(RollupPause))
        rollups.add_batch(connection, readings)


def insert_reading(reading):
    """Store one reading, sharing its INSERT and commit with those of concurrent requests."""
    engine = db.engine
    if database_file(engine) is None and engine.dialect.name == "sqlite":
        insert_readings([reading])  # an in-memory database lives on its pooled connection only
        return
    CommitGroup.for_engine(engine).submit(reading)
