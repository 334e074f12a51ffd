"""Reading the rollups: whether they may answer for a device and type now, and the histograms of pieces.

Every function takes a connection inside one read snapshot (canary.statistics.folding.snapshot), so
that rollup buckets and raw readings come from the same state of the database.
"""
import functools

import msgspec
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from canary.statistics import triggers
from canary.statistics.planner import LEVELS, Block, Raw, bucket_start
from models import Rollup, RollupException, RollupLog, RollupState, SensorData, matching

_decode = msgspec.json.Decoder(dict[int, int]).decode
_armed_versions = {}  # SQLite engine URL -> (schema_version, armed), as each process last saw them


class InconsistentRollups(RuntimeError):
    """Rollups and raw readings disagreed (a negative count): answer from the raw readings instead."""


def armed(connection, current=None):
    """Tell whether every rollup trigger is in place on the readings table, as the rollups need.

    The legacy test harness drops the table and makes a bare one, which takes the triggers with it.
    On SQLite the schema's version number tells, for a few microseconds, whether anything changed;
    on PostgreSQL a row from status() has counted the triggers already.
    """
    if connection.dialect.name == "postgresql":
        count = current.triggers if current is not None else connection.execute(_TRIGGERS).scalar()
        return count == len(triggers.POSTGRESQL_NAMES)
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar()
    key = str(connection.engine.url)
    seen = _armed_versions.get(key)
    if seen is None or seen[0] != version:
        names = connection.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'readings'")).scalars()
        seen = _armed_versions[key] = (version, set(triggers.NAMES) <= set(names))
    return seen[1]


_TRIGGERS = sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('readings') AND tgenabled <> 'D' "
                    "AND tgname = ANY(:names)").bindparams(names=list(triggers.POSTGRESQL_NAMES))


def state(connection):
    """Return the rollup_state row, or None where the rollups' tables are not there."""
    try:
        return connection.execute(sa.select(RollupState).where(RollupState.id == 1)).first()
    except sa.exc.DBAPIError:
        return None


@functools.cache
def pending_sql(dialect):
    """Return a SQL truth: some reading waits to be folded into the rollups (canary/statistics/folding.py)."""
    if dialect == "postgresql":
        return sa.exists(sa.select(sa.literal(1)).select_from(RollupLog))
    last = sa.select(sa.func.coalesce(sa.func.max(sa.column("rowid")), 0)).select_from(sa.table("readings"))
    return sa.or_(RollupState.folded_rowid.is_(None), last.scalar_subquery() > RollupState.folded_rowid)


def status(connection, filters=None):
    """Return the rollups' status as one row, or None where their tables are not there.

    The state's status and frontier, whether readings are pending and, on PostgreSQL, how many
    triggers are armed; given one device's filters (device_uuid and type, optional start and end),
    also whether the device and type are excepted and the first and last date_created >= 0 of the
    matching readings. One statement, as each costs a round trip on PostgreSQL: a read snapshot
    takes it first (canary.statistics.folding.snapshot), and most answers need nothing more of it.
    """
    given = given_filters(filters or {})
    try:
        return connection.execute(_status_statement(connection.dialect.name, tuple(given)), given).first()
    except sa.exc.DBAPIError:
        return None


@functools.cache  # built once per shape of filters: building it costs more than SQLite takes to answer it
def _status_statement(dialect, names):
    columns = [RollupState.status, RollupState.frontier_device, RollupState.frontier_type,
               pending_sql(dialect).label("pending")]
    if "device_uuid" in names:
        columns.append(sa.exists().where(RollupException.device_uuid == sa.bindparam("device_uuid"),
                                         RollupException.type == sa.bindparam("type")).label("excepted"))
        first, last = span_columns(names)
        columns += [first.label("first"), last.label("last")]
    if dialect == "postgresql":
        columns.append(_TRIGGERS.columns(count=sa.Integer()).scalar_subquery().label("triggers"))
    return sa.select(*columns).where(RollupState.id == 1)


def given_filters(filters):
    """Return the filters that are set, by name."""
    return {name: value for name, value in filters.items() if value is not None}


def bound_filters(names):
    """Return bind parameters named after filters, to stand for their values in matching()."""
    return {name: sa.bindparam(name) for name in names}


def span_columns(names):
    """Return two scalar subqueries: the first and last date_created >= 0 of the readings that match filters
    with these names (bound by name), each a seek to one end of the time index."""
    matched = matching(sa.select(SensorData.date_created), **bound_filters(names)).where(
        SensorData.date_created >= 0, SensorData.value.is_not(None))
    return (matched.order_by(SensorData.date_created).limit(1).scalar_subquery(),
            matched.order_by(SensorData.date_created.desc()).limit(1).scalar_subquery())


def serving(connection, device_uuid, reading_type, current):
    """Tell whether the rollups hold exactly the readings of one device and type.

    `current` is the snapshot's status() row for them, None where it could not be read.
    """
    if current is None or current.pending or current.excepted or not armed(connection, current):
        return False
    if current.status == "ready":
        return True
    if current.frontier_device is None:
        return False
    behind = sa.select(sa.tuple_(sa.literal(device_uuid), sa.literal(reading_type))
                       < sa.tuple_(sa.literal(current.frontier_device), sa.literal(current.frontier_type)))
    return bool(connection.execute(behind).scalar())


def fleet_serving(connection, current):
    """Tell whether the rollups hold every device's readings, as the fleet summary needs; `current` as for serving()."""
    return current is not None and current.status == "ready" and not current.pending and armed(connection, current)


def excepted_devices(connection, reading_type):
    """Return the devices of a type whose readings the rollups cannot hold."""
    return set(connection.execute(sa.select(RollupException.device_uuid).where(
        RollupException.type == reading_type)).scalars())


def block_histograms(connection, device_uuid, reading_type, blocks):
    """Return {Block: {value: count}} for one device and type; a bucket without readings is absent.

    One statement for every level: a round trip costs more than the query on PostgreSQL.
    """
    by_width = {}
    for block in blocks:
        by_width.setdefault(block.width, set()).add(block.start)
    if not by_width:
        return {}
    blocks_statement = _blocks_postgresql if connection.dialect.name == "postgresql" else _blocks_sqlite
    statement, parameters = blocks_statement(by_width)
    parameters.update(device=device_uuid, type=reading_type)
    found = {}
    for width, bucket, text in connection.execute(statement, parameters):
        if bucket in by_width[width]:
            found[Block(width, bucket)] = _decode(text)
    return found


def _dense(starts, width):
    """Tell whether bucket starts are dense enough to read as one index range from the first to the last."""
    return len(starts) * 4 >= (max(starts) - min(starts)) // width + 1


def _blocks_sqlite(by_width):
    """Return the statement and parameters that read buckets {width: starts}: a SELECT per level."""
    selects = []
    for width, starts in by_width.items():
        select = sa.select(Rollup.level, Rollup.bucket, sa.cast(Rollup.hist, sa.Text)).where(
            Rollup.device_uuid == sa.bindparam("device"), Rollup.type == sa.bindparam("type"), Rollup.level == width)
        dense = _dense(starts, width)
        selects.append(select.where(Rollup.bucket.between(min(starts), max(starts)) if dense
                                    else Rollup.bucket.in_(sorted(starts))))
    return (selects[0] if len(selects) == 1 else sa.union_all(*selects)), {}


def _blocks_postgresql(by_width):
    """Return the statement and parameters that read buckets {width: starts}: index ranges given as arrays.

    The statement's text is the same for any buckets, so psycopg prepares it once per connection, and
    its generic plan reads one index range for each; a plan made for one IN list can scan a whole level.
    """
    ranges = []
    for width, starts in by_width.items():
        if _dense(starts, width):
            ranges.append((width, min(starts), max(starts)))
        else:
            ranges += [(width, start, start) for start in sorted(starts)]
    levels, lows, highs = map(list, zip(*ranges))
    return _BLOCKS_POSTGRESQL, {"levels": levels, "lows": lows, "highs": highs}


# OFFSET 0 keeps the planner from flattening the LATERAL subquery into a join: as a join, where one
# device holds most of the rows, it hashes the device's whole table of buckets (50 ms for 5 years).
_BLOCKS_POSTGRESQL = sa.text(
    "SELECT b.level, b.bucket, b.hist "
    "FROM unnest(CAST(:levels AS integer[]), CAST(:lows AS bigint[]), CAST(:highs AS bigint[])) "
    "AS k(level, low, high), "
    "LATERAL (SELECT rollups.level, rollups.bucket, CAST(rollups.hist AS TEXT) AS hist FROM rollups "
    "WHERE rollups.device_uuid = :device AND rollups.type = :type AND rollups.level = k.level "
    "AND rollups.bucket BETWEEN k.low AND k.high OFFSET 0) AS b")


def raw_histograms(connection, device_uuid, reading_type, raws):
    """Return {Raw: {value: count}} for one device and type, one index range each, in one query."""
    raws = sorted(set(raws), key=lambda raw: raw.low)
    if not raws:
        return {}
    if connection.dialect.name == "postgresql":
        ranges = ("unnest(CAST(:lows AS bigint[]), CAST(:highs AS bigint[])) WITH ORDINALITY AS r(low, high, piece)",
                  "r.low", "r.high", "r.piece")
        parameters = {"lows": [raw.low for raw in raws], "highs": [raw.high for raw in raws]}
    else:
        ranges = ("json_each(:ranges) AS r", "json_extract(r.value, '$[0]')", "json_extract(r.value, '$[1]')",
                  "r.key + 1")
        parameters = {"ranges": msgspec.json.encode([[raw.low, raw.high] for raw in raws]).decode()}
    source, low, high, piece = ranges
    rows = connection.execute(sa.text(
        f"SELECT {piece} AS piece, readings.value, count(*) FROM {source} JOIN readings "
        f"ON readings.device_uuid = :device AND readings.type = :type "
        f"AND readings.date_created BETWEEN {low} AND {high} "
        f"WHERE readings.value IS NOT NULL GROUP BY {piece}, readings.value"),
        {**parameters, "device": device_uuid, "type": reading_type})
    found = {}
    for number, value, count in rows:
        found.setdefault(raws[number - 1], {})[value] = count
    return found


def histograms(connection, device_uuid, reading_type, pieces):
    """Return {piece: {value: count}} for Blocks and Raws alike."""
    return {**block_histograms(connection, device_uuid, reading_type, [p for p in pieces if isinstance(p, Block)]),
            **raw_histograms(connection, device_uuid, reading_type, [p for p in pieces if isinstance(p, Raw)])}


def combine(signed_pieces, found):
    """Return the histogram, [(value, count)] ascending, that signed pieces add up to."""
    total = {}
    for sign, piece in signed_pieces:
        for value, count in found.get(piece, {}).items():
            total[value] = total.get(value, 0) + sign * count
    histogram = sorted((value, count) for value, count in total.items() if count)
    if histogram and min(count for _, count in histogram) < 0:
        raise InconsistentRollups(f"negative count in {histogram}")
    return histogram



def note_exception(connection, device_uuid, reading_type):
    """Mark a device and type as read raw from now on."""
    insert = (sa.dialects.postgresql.insert if connection.dialect.name == "postgresql" else sa.dialects.sqlite.insert)
    exception = insert(RollupException).values(device_uuid=device_uuid, type=reading_type)
    connection.execute(exception.on_conflict_do_nothing())


def replace(connection, rows):
    """Write rollup rows (dicts of every column), replacing the rows with the same keys."""
    if connection.dialect.name == "postgresql":
        # One statement and one parameter for all the rows: psycopg's executemany costs a round of its
        # pipeline per row, half of a rebuild's time.
        connection.execute(_REPLACE_POSTGRESQL, {"rows": msgspec.json.encode(rows).decode()})
        return
    connection.exec_driver_sql(_REPLACE_SQLITE, rows)  # sqlite3's executemany: a third of SQLAlchemy's cost a row


_REPLACE_SQLITE = (
    "INSERT INTO rollups (type, level, bucket, device_uuid, hist, total) "
    "VALUES (:type, :level, :bucket, :device_uuid, :hist, :total) "
    "ON CONFLICT DO UPDATE SET hist = excluded.hist, total = excluded.total")


_REPLACE_POSTGRESQL = sa.text(
    "INSERT INTO rollups (type, level, bucket, device_uuid, hist, total) "
    "SELECT type, level, bucket, device_uuid, hist, total FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
    "AS r(type text, level integer, bucket bigint, device_uuid text, hist jsonb, total bigint) "
    "ON CONFLICT (type, level, bucket, device_uuid) DO UPDATE SET hist = EXCLUDED.hist, total = EXCLUDED.total")


_KEYED = sa.text(
    "SELECT r.type, r.level, r.bucket, r.device_uuid, r.hist FROM json_each(:keys) AS k JOIN rollups AS r "
    "ON r.type = k.value ->> 0 AND r.level = k.value ->> 1 AND r.bucket = k.value ->> 2 "
    "AND r.device_uuid = k.value ->> 3")


def add_counts(connection, counts):
    """Add counts of readings to the rollups, inside a SQLite write transaction.

    Each count is (device_uuid, type, value, date, readings): `readings` readings of that value
    within the finest bucket that starts at `date`. Each bucket's row is read once, added to in
    Python and written back whole: a fold of one busy device's readings writes its few buckets,
    not an upsert per value. PostgreSQL folds in one statement.
    """
    histograms = {}
    for device, reading_type, value, date, readings in counts:
        for width, offset in LEVELS:
            histogram = histograms.setdefault((reading_type, width, bucket_start(date, width, offset), device), {})
            histogram[value] = histogram.get(value, 0) + readings
    if not histograms:
        return
    keys = msgspec.json.encode(list(histograms)).decode()
    for reading_type, width, start, device, text in connection.execute(_KEYED, {"keys": keys}):
        histogram = histograms[(reading_type, width, start, device)]
        for value, count in _decode(text).items():
            histogram[value] = histogram.get(value, 0) + count
    replace(connection, [{"type": key[0], "level": key[1], "bucket": key[2], "device_uuid": key[3],
                          "hist": msgspec.json.encode(histograms[key]).decode(), "total": sum(histograms[key].values())}
                         for key in sorted(histograms)])
