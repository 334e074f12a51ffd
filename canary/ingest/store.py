"""Storing readings: a batch in one transaction, a single reading in a commit shared with its neighbours."""
import sqlalchemy as sa

from canary.database import database_file, write_transaction
from canary.ingest.group_commit import CommitGroup
from models import SensorData, db

_INSERT = sa.insert(SensorData.__table__)


def insert_readings(readings):
    """Store readings (dicts with the four reading keys) in one transaction."""
    with write_transaction(db.engine) as connection:
        connection.execute(_INSERT, readings)


def insert_reading(reading):
    """Store one reading, sharing its INSERT and commit with those of concurrent requests."""
    engine = db.engine
    if database_file(engine) is None and engine.dialect.name == "sqlite":
        insert_readings([reading])  # an in-memory database lives on its pooled connection only
        return
    CommitGroup.for_engine(engine).submit(reading)
