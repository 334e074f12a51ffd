"""Building the rollups of readings stored before the triggers were: after an upgrade, or a table replaced.

`arm` puts the triggers in place and starts over; each `step` then recomputes the histograms of
the next CHUNK_ROWS or so readings in the index's order, (device, type, date), to the end of a
week, in one short write transaction that no writer can interleave with (SQLite's write lock;
a SHARE lock on PostgreSQL's readings table), and moves rollup_state's frontier past them. The
triggers and folds keep whatever lies behind the frontier exact from then on; answers read raw
readings for what lies ahead of it. `Builder` runs the steps in a background thread of each app
process, one process at a time (a lease in rollup_state), re-arms when the triggers have gone,
and, in the process holding the lease, folds pending readings into the rollups
(canary/statistics/folding.py) from 4 to 40 times a second while they arrive, as often as keeps
each fold short (next_fold_pause), looking less and less often, down to once a second, while none
do. An answer folds whatever is left itself.
"""
import logging
import os
import socket
import threading
import time

import msgspec
import sqlalchemy as sa

from canary.database import write_transaction
from canary.statistics import folding, rollups, triggers
from canary.statistics.planner import HOUR, LEVELS, ROLLUP_HORIZON, bucket_start
from models import Rollup, RollupException, RollupLog, RollupState, SensorData

log = logging.getLogger(__name__)
CHUNK_ROWS = 50_000
LEASE_SECONDS = 30.0
KEY = (SensorData.device_uuid, SensorData.type, SensorData.date_created)


def _lock_readings(connection):
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("LOCK TABLE readings IN SHARE MODE"))


def arm(engine):
    """Put the triggers and the readings' index in place, empty the rollups and start a rebuild."""
    with write_transaction(engine) as connection:
        _lock_readings(connection)
        for index in SensorData.__table__.indexes:  # tables made by other tools may lack it
            connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        for statement in triggers.create_statements(connection.dialect.name):
            connection.exec_driver_sql(statement)
        connection.execute(sa.delete(Rollup))
        connection.execute(sa.delete(RollupException))
        connection.execute(sa.delete(RollupLog))  # the rebuild counts these readings
        empty = connection.execute(sa.select(sa.literal(1)).select_from(SensorData.__table__).limit(1)).first() is None
        values = {"status": "ready" if empty else "building", "frontier_device": None, "frontier_type": None,
                  "frontier_date": None, "folded_rowid": None}
        if connection.dialect.name == "sqlite":
            last = sa.text("SELECT coalesce(max(rowid), 0) FROM readings")
            values["folded_rowid"] = connection.execute(last).scalar()  # the rebuild counts up to here
        if connection.execute(sa.update(RollupState).where(RollupState.id == 1).values(**values)).rowcount == 0:
            connection.execute(sa.insert(RollupState).values(id=1, **values))
    log.info("Rollup triggers armed; rebuilding the rollups of the stored readings")


def _rollable(connection):
    if connection.dialect.name == "postgresql":
        return sa.and_(SensorData.device_uuid.is_not(None), SensorData.type.is_not(None),
                       SensorData.value.is_not(None), SensorData.date_created >= 0,
                       SensorData.date_created < ROLLUP_HORIZON)
    return sa.text(triggers.rollable_sql("readings"))


def _excepted(connection):
    if connection.dialect.name == "postgresql":
        return sa.and_(SensorData.device_uuid.is_not(None), SensorData.type.is_not(None),
                       SensorData.value.is_not(None),
                       sa.or_(SensorData.date_created.is_(None), SensorData.date_created < 0))
    return sa.text(triggers.excepted_sql("readings"))


def step(engine, chunk_rows=CHUNK_ROWS):
    """Recompute the rollups of the next chunk of readings; return whether the rebuild goes on."""
    with write_transaction(engine) as connection:
        _lock_readings(connection)
        state = connection.execute(sa.select(RollupState).where(RollupState.id == 1)).first()
        if state is None or state.status != "building":
            return False
        folding.fold_all(connection)  # so that the readings recomputed here are counted once, not pending too
        after = None if state.frontier_device is None else (
            sa.tuple_(*KEY) >= sa.tuple_(sa.literal(state.frontier_device), sa.literal(state.frontier_type),
                                         sa.literal(state.frontier_date)))
        keyed = sa.select(*KEY).where(SensorData.device_uuid.is_not(None), SensorData.type.is_not(None),
                                      SensorData.date_created.is_not(None))
        if after is not None:
            keyed = keyed.where(after)
        ahead = connection.execute(keyed.order_by(*KEY).limit(1).offset(chunk_rows)).first()
        week, offset = LEVELS[0]
        end = None if ahead is None else (ahead[0], ahead[1], bucket_start(ahead[2], week, offset) + week)
        bounds = [condition for condition in (after, None if end is None else sa.tuple_(*KEY) < sa.tuple_(
            *(sa.literal(part) for part in end))) if condition is not None]
        _recompute(connection, state, end, bounds)
        frontier = {"frontier_device": None, "frontier_type": None, "frontier_date": None, "status": "ready"}
        if end is not None:
            frontier = dict(zip(("frontier_device", "frontier_type", "frontier_date"), end), status="building")
        connection.execute(sa.update(RollupState).where(RollupState.id == 1).values(**frontier))
    if end is None:
        tidy(engine)
    return end is not None


def tidy(engine):
    """Vacuum and analyze PostgreSQL's rollups once a rebuild is done.

    The rebuild's upserts leave dead row versions and planner statistics of a table that was
    empty; autovacuum would see to both a minute or so later, in the middle of the first answers
    that read the rollups, which took up to twice as long meanwhile.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {Rollup.__tablename__}")


def _recompute(connection, state, end, bounds):
    """Replace the rollups of the readings within bounds by histograms computed from them.

    Chunks end at week edges, so every bucket of theirs is whole; a bucket the triggers filled
    ahead of the frontier is replaced, and one no reading is left in has a total of 0.
    """
    hour = (SensorData.date_created // HOUR * HOUR).label("hour")
    counts = connection.execute(
        sa.select(SensorData.device_uuid, SensorData.type, hour, SensorData.value, sa.func.count())
        .where(*bounds, _rollable(connection))
        .group_by(SensorData.device_uuid, SensorData.type, hour, SensorData.value))
    histograms = {}
    for device, reading_type, hour_start, value, count in counts:
        for width, offset in LEVELS:
            key = (reading_type, width, bucket_start(hour_start, width, offset), device)
            histogram = histograms.setdefault(key, {})
            histogram[value] = histogram.get(value, 0) + count
    if histograms:
        # In key order, so that on PostgreSQL each bucket's rows of neighbouring devices share heap pages,
        # which the fleet summary then reads a few pages at a time rather than a page a device.
        rollups.replace(connection, [rollup_row(connection, key, histograms[key]) for key in sorted(histograms)])
    pair = sa.tuple_(SensorData.device_uuid, SensorData.type)
    within = ([] if state.frontier_device is None else [pair >= sa.tuple_(sa.literal(state.frontier_device),
                                                                          sa.literal(state.frontier_type))])
    within += [] if end is None else [pair <= sa.tuple_(sa.literal(end[0]), sa.literal(end[1]))]
    # Readings without a date fall outside every date bound: their devices and types are looked up apart.
    undated = sa.select(SensorData.device_uuid, SensorData.type).where(
        SensorData.date_created.is_(None), SensorData.value.is_not(None), SensorData.device_uuid.is_not(None),
        SensorData.type.is_not(None), *within)
    excepted = sa.select(SensorData.device_uuid, SensorData.type).where(*bounds, _excepted(connection)).union(undated)
    for device, reading_type in connection.execute(excepted).all():
        rollups.note_exception(connection, device, reading_type)


def rollup_row(connection, key, histogram):
    """Return the values of a rollup row: its key and histogram, as JSON text (a JSONB value on PostgreSQL)."""
    reading_type, width, start, device = key
    hist = ({str(value): count for value, count in histogram.items()} if connection.dialect.name == "postgresql"
            else msgspec.json.encode(histogram).decode())
    return {"type": reading_type, "level": width, "bucket": start, "device_uuid": device, "hist": hist,
            "total": sum(histogram.values())}


def build(engine, chunk_rows=CHUNK_ROWS):
    """Run the rebuild's steps until it is done."""
    while step(engine, chunk_rows):
        pass


FOLD_HOLD_SECONDS = 0.005  # a fold holds the writers off; past this, a POST waiting on it shows in the p99
FOLD_PAUSES = (0.025, 0.25)  # the shortest and longest pause between folds while readings arrive


def next_fold_pause(pause, took):
    """Return the pause before the next fold, from the last pause and how long its fold held the writers.

    Each fold costs about a millisecond whatever it folds, and then a little per reading: on one
    device's readings, folding four times a second spends little on either. Readings spread over
    thousands of devices write a bucket row each, so a fold that holds the writers too long makes
    the next one come sooner and fold fewer.
    """
    shortest, longest = FOLD_PAUSES
    if took > FOLD_HOLD_SECONDS:
        return max(shortest, pause / 2)
    if took < FOLD_HOLD_SECONDS / 2:
        return min(longest, pause * 2)
    return min(longest, max(shortest, pause))


class Builder(threading.Thread):
    """A daemon thread that keeps the rollups armed and built, holding rollup_state's lease while it builds."""

    def __init__(self, engine, idle_seconds=1.0):
        super().__init__(name="canary-rollups", daemon=True)
        self.engine, self.idle_seconds = engine, idle_seconds
        self.identity = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self.stopping = threading.Event()
        self.folded, self.fold_took = False, 0.0

    def run(self):
        pause = fold_pause = FOLD_PAUSES[0]
        while not self.stopping.is_set():
            try:
                busy = self.tend()
            except sa.exc.SQLAlchemyError as error:  # the database's state, not a bug: a line, no traceback
                log.warning("Could not tend the rollups (%s); trying again shortly", getattr(error, "orig", error))
                busy = False
            if not busy:
                # Folds while readings arrive, each a short hold of the writers; an idle database is
                # looked at less and less often, down to once every idle_seconds.
                if self.folded:
                    pause = fold_pause = next_fold_pause(fold_pause, self.fold_took)
                else:
                    pause = min(2 * pause, self.idle_seconds)
                self.stopping.wait(pause)

    def tend(self):
        """Re-arm lost triggers, or fold pending readings and take one rebuild step if this process holds the
        lease; return whether work is left to do at once."""
        with self.engine.connect() as connection:
            current, is_armed = rollups.state(connection), rollups.armed(connection)
            waiting = is_armed and folding.pending(connection)
        if current is None:
            return False  # the schema is not migrated yet
        if not is_armed:
            if self.lease():
                arm(self.engine)
            return True
        self.folded = False
        if waiting and self.holds_lease(current):  # one process folds: the others would only queue for the lock
            with write_transaction(self.engine) as connection:
                began = time.monotonic()  # once the writers are held off: waiting for them holds nobody up
                folded = folding.fold(connection)
            self.folded, self.fold_took = folded > 0, time.monotonic() - began
            if folded == folding.FOLD_ROWS:
                return True
        return current.status == "building" and self.lease() and step(self.engine)

    def holds_lease(self, current):
        """Tell whether this process holds the lease, as `current` (rollup_state) shows it; renew it once half spent."""
        now = time.time()
        if current.builder == self.identity and (current.lease_until or 0) - now > LEASE_SECONDS / 2:
            return True
        if current.builder not in (None, self.identity) and (current.lease_until or 0) > now:
            return False
        return self.lease()

    def lease(self):
        """Take or renew the rebuild's lease; return whether this process holds it."""
        now = time.time()
        with write_transaction(self.engine) as connection:
            taken = connection.execute(sa.update(RollupState).where(
                RollupState.id == 1,
                sa.or_(RollupState.builder == self.identity, RollupState.lease_until.is_(None),
                       RollupState.lease_until < now)).values(builder=self.identity,
                                                            lease_until=now + LEASE_SECONDS))
            return taken.rowcount == 1


def init_app(app):
    """Start a Builder thread on each process's first request, where ROLLUP_BUILDER says so."""
    if not app.config["ROLLUP_BUILDER"]:
        return
    started = []
    lock = threading.Lock()

    def start_builder():
        if started:
            return
        with lock:
            if not started:
                engine = app.extensions["sqlalchemy"].engine
                builder = Builder(engine)
                builder.start()
                started.append(builder)
                app.extensions["canary_rollups_builder"] = builder

    app.before_request(start_builder)
