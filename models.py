"""Every table of the service, SensorData's readings and the tokens, and the one place the schema is created."""
import threading

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from canary.database import write_transaction


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class SensorData(db.Model):
    """One temperature or humidity reading from one device."""

    __tablename__ = "readings"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
    )
    device_uuid: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[int] = mapped_column(sa.Integer())
    date_created: Mapped[int] = mapped_column(sa.BigInteger())

    __table_args__ = (
        # TimescaleDB requires the partitioning column in every unique key of a hypertable.
        sa.UniqueConstraint("date_created", "id", name="uq_readings_date_created_id").ddl_if(
            dialect="postgresql"
        ),
        # One covering index serves listings, time windows and statistics. A second one in
        # value order would make whole-history statistics about twice as fast, but it would
        # double the index work of every insert, and ingest is the hot path.
        sa.Index("ix_readings_device_type_time_value", "device_uuid", "type", "date_created", "value"),
    )


# On SQLite a lone INTEGER PRIMARY KEY is the rowid; elsewhere the unique key above identifies rows.
SensorData.__table__.primary_key.ddl_if(dialect="sqlite")

READING_COLUMNS = (SensorData.date_created, SensorData.device_uuid, SensorData.type, SensorData.value)
READING_KEYS = tuple(column.key for column in READING_COLUMNS)


class Token(db.Model):
    """A bearer token, stored only as the SHA-256 digest of its text."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    device_uuid: Mapped[str | None] = mapped_column(sa.String(64))
    label: Mapped[str | None] = mapped_column(sa.String(200))
    # Epoch seconds, like readings' date_created.
    created_at: Mapped[int] = mapped_column(sa.BigInteger())
    revoked_at: Mapped[int | None] = mapped_column(sa.BigInteger())

    __table_args__ = (
        sa.CheckConstraint("kind IN ('device', 'ingest', 'read')", name="ck_tokens_kind"),
        sa.CheckConstraint(
            "(kind = 'device' AND device_uuid IS NOT NULL) OR (kind <> 'device' AND device_uuid IS NULL)",
            name="ck_tokens_device",
        ),
    )


def arrival_order():
    """Return the column that orders readings as they were stored."""
    if db.engine.dialect.name == "sqlite":
        # rowid exists on every SQLite table, including four-column tables made by other tools.
        return sa.literal_column("readings.rowid")
    return SensorData.id


def matching(statement, device_uuid, type=None, start=None, end=None):
    """Restrict a statement to one device's readings within the optional filters."""
    statement = statement.where(SensorData.device_uuid == device_uuid)
    if type is not None:
        statement = statement.where(SensorData.type == type)
    if start is not None:
        statement = statement.where(SensorData.date_created >= start)
    if end is not None:
        statement = statement.where(SensorData.date_created <= end)
    return statement


def check_readings_table():
    """Read at most one row of the readings table: proof that it can be queried, without a scan."""
    db.session.execute(sa.select(sa.literal(1)).select_from(SensorData.__table__).limit(1)).all()


_SCHEMA_LOCK_ID = 0x43616E617279  # any constant shared by every process that creates the schema


def create_schema(engine):
    """Create every table and any missing index; safe to run from many processes at once.

    Tables made by other tools are kept as they are: a four-column readings table gets the index.
    """
    with write_transaction(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_ID)))
        for table in db.metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                connection.execute(CreateIndex(index, if_not_exists=True))


class Schema:
    """Creates the schema before a process's first request, and again before the next one after a table was lost.

    Nothing is created when the app is imported, so `from app import app` touches no database.
    """

    def __init__(self):
        self.ready, self._lock = False, threading.Lock()

    def ensure(self):
        """Create the schema unless this process already has, or knows it is whole."""
        if self.ready:
            return
        with self._lock:
            if not self.ready:
                create_schema(db.engine)
                self.ready = True

    def lost(self):
        """Note that a table went missing, so that the next request creates the schema again."""
        self.ready = False


def init_app(app):
    """Create the schema on each process's first request."""
    schema = app.extensions["canary_schema"] = Schema()
    app.before_request(schema.ensure)
