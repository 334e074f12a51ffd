"""Every table of the service: SensorData's readings, the tokens, and the rollups that keep statistics fast."""
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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


TOKEN_KINDS = "('device', 'ingest', 'read', 'metrics')"


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
        sa.CheckConstraint(f"kind IN {TOKEN_KINDS}", name="ck_tokens_kind"),
        sa.CheckConstraint(
            "(kind = 'device' AND device_uuid IS NOT NULL) OR (kind <> 'device' AND device_uuid IS NULL)",
            name="ck_tokens_device",
        ),
    )


class Rollup(db.Model):
    """The histogram of one device's readings of one type in one hour, UTC day or week: {value: count} as JSON.

    Kept exact by triggers on the readings table (canary/statistics/triggers.py), so that any window
    is a few whole buckets plus the raw readings at its edges (canary/statistics/planner.py).
    """

    __tablename__ = "rollups"

    type: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    level: Mapped[int] = mapped_column(sa.Integer(), primary_key=True)  # the bucket's width in seconds
    bucket: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True)  # its first second
    # In code point order on PostgreSQL too, so that each bucket's rows come in the order Python merges them.
    device_uuid: Mapped[str] = mapped_column(sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql"),
                                             primary_key=True)
    hist: Mapped[str] = mapped_column(sa.Text().with_variant(JSONB(), "postgresql"))
    total: Mapped[int] = mapped_column(sa.BigInteger())

    # The key serves the fleet: one bucket's rows of every device, in device order. The index serves
    # one device's buckets.
    __table_args__ = (sa.Index("ix_rollups_device", "device_uuid", "type", "level", "bucket"),
                      {"sqlite_with_rowid": False})


class RollupState(db.Model):
    """Whether the rollups are whole, or how far a rebuild has come: one row."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # "building" or "ready"
    # A rebuild has recomputed every reading before (device, type, date) in the readings index's order.
    frontier_device: Mapped[str | None] = mapped_column(sa.String(64))
    frontier_type: Mapped[str | None] = mapped_column(sa.String(16))
    frontier_date: Mapped[int | None] = mapped_column(sa.BigInteger())
    # SQLite: the rollups count every reading up to this rowid; the ones after it wait for a fold.
    folded_rowid: Mapped[int | None] = mapped_column(sa.BigInteger())
    builder: Mapped[str | None] = mapped_column(sa.String(64))  # who holds the rebuild's lease, and until when
    lease_until: Mapped[float | None] = mapped_column(sa.Float())


class RollupException(db.Model):
    """A device and type with a reading the rollups cannot hold (not an integer, or before 1970): read raw."""

    __tablename__ = "rollup_exceptions"

    device_uuid: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(16), primary_key=True)


class RollupLog(db.Model):
    """On PostgreSQL, readings inserted but not yet folded into the rollups; SQLite's are the rows past folded_rowid.

    The rows are a heap without a key: the insert trigger appends them, a fold takes them off by ctid.
    """

    __tablename__ = "rollup_log"
    __mapper_args__ = {"primary_key": ["device_uuid", "type", "date_created", "value"]}  # for the ORM only

    device_uuid: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[int] = mapped_column(sa.Integer())
    date_created: Mapped[int] = mapped_column(sa.BigInteger())


class IdempotencyKey(db.Model):
    """A POST's Idempotency-Key: claimed while its request is in flight, then the response it got, for retries.

    The response is written in the transaction that stores the request's readings, so a key is
    answered from here exactly when its readings are stored.
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(sa.String(80), primary_key=True)  # token:<id>, device:<uuid> or open
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of the method, path and body
    created_at: Mapped[float] = mapped_column(sa.Float())
    owner: Mapped[str | None] = mapped_column(sa.String(32))  # the claim of the request in flight
    lease_until: Mapped[float | None] = mapped_column(sa.Float())
    status: Mapped[int | None] = mapped_column(sa.Integer())
    response: Mapped[str | None] = mapped_column(sa.Text())

    # Expiry deletes the oldest keys through this index, never looking at the readings.
    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)


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
