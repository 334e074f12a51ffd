"""Histograms per group from the raw readings: per time bucket of one device, and per device of the fleet.

Each query makes one pass grouping the readings by (group, value), and the database folds each
group's counts into one row, "value,count,value,count,...", so Python handles a row per bucket
or device rather than one per (group, value) pair.
"""
import functools
import json

import msgspec
import sqlalchemy as sa

from models import SensorData


def parse_histogram(text):
    """Return the histogram that a folded row writes as "value,count,value,count,..."."""
    try:
        numbers = _integers(f"[{text}]")  # a third of the cost of splitting and int() in Python
    except msgspec.ValidationError:  # REAL values, which tables made by other tools may hold
        numbers = json.loads(f"[{text}]")
    pairs = iter(numbers)
    return sorted(zip(pairs, pairs))


_integers = msgspec.json.Decoder(list[int]).decode


def _folded(counts, key):
    """Return a select folding (key, value, readings) groups into rows of key and histogram text."""
    pairs = sa.cast(counts.c.value, sa.Text) + "," + sa.cast(counts.c.readings, sa.Text)
    return sa.select(key, sa.func.aggregate_strings(pairs, ",")).group_by(key)


def _readings():
    return sa.func.count().label("readings")


def bucket_number(run_count, column=SensorData.date_created):
    """Return SQL numbering the bucket each date falls in, over runs given as parameters.

    Run i's first edge, first bucket number and width are the parameters start_i, first_i and
    width_i (see run_parameters). Arithmetic within a run, and a tree of CASEs finds the run in
    log2(runs) comparisons. The dividend is never negative, where SQLite and PostgreSQL would
    round differently from Python.
    """

    def number(low, high):
        if high - low == 1:
            return _parameter("first", low) + (column - _parameter("start", low)) // _parameter("width", low)
        middle = (low + high) // 2
        later = column >= _parameter("start", middle)
        return sa.case((later, number(middle, high)), else_=number(low, middle))

    return number(0, run_count)


def _parameter(name, index):
    return sa.bindparam(f"{name}_{index}", type_=sa.BigInteger())


def run_parameters(runs):
    """Return the parameters of bucket_number for these runs."""
    parameters = {}
    for index, run in enumerate(runs):
        parameters.update({f"start_{index}": run.start, f"first_{index}": run.first, f"width_{index}": run.width})
    return parameters


@functools.lru_cache(maxsize=256)
def _bucket_query(run_count):
    """Return the folded (bucket, value) query for a number of runs; every value is a parameter.

    Built once per number of runs, so a request spends no time building and caching SQL.
    """
    bounds = (SensorData.date_created >= _parameter("span", 0), SensorData.date_created <= _parameter("span", 1))
    counts = (
        sa.select(bucket_number(run_count).label("bucket"), SensorData.value, _readings())
        .where(SensorData.device_uuid == sa.bindparam("device_uuid"), SensorData.type == sa.bindparam("type"), *bounds)
        .where(SensorData.value.is_not(None))
        .group_by(sa.literal_column("bucket"), SensorData.value)
        .subquery()
    )
    return _folded(counts, counts.c.bucket)


def fetch_bucket_histograms(connection, filters, runs):
    """Return {bucket number: histogram} over the readings from start to end, in one indexed pass."""
    parameters = {"device_uuid": filters["device_uuid"], "type": filters["type"],
                  "span_0": filters["start"], "span_1": filters["end"], **run_parameters(runs)}
    rows = connection.execute(_bucket_query(len(runs)), parameters).all()
    return {bucket: parse_histogram(text) for bucket, text in rows}


def _in_byte_order(column, dialect):
    """Return a column that sorts by code point on every backend, whatever its collation.

    Grouping keeps the column's own collation, as every per-device route does: collating there
    too cost SQLite 15% of the summary.
    """
    return column.collate("C" if dialect.name == "postgresql" else "BINARY")


def device_histograms(connection, chunk_rows, type, start=None, end=None):
    """Yield (device_uuid, histogram) for each device with matching readings, most readings first.

    The database orders the folded rows by each device's total, so they stream and memory stays
    flat however many devices there are.
    """
    counts = sa.select(SensorData.device_uuid, SensorData.value, _readings()).where(
        SensorData.type == type, SensorData.device_uuid.is_not(None), SensorData.value.is_not(None)
    )
    if start is not None:
        counts = counts.where(SensorData.date_created >= start)
    if end is not None:
        counts = counts.where(SensorData.date_created <= end)
    counts = counts.group_by(SensorData.device_uuid, SensorData.value).subquery()
    statement = _folded(counts, counts.c.device_uuid).order_by(
        sa.func.sum(counts.c.readings).desc(), _in_byte_order(counts.c.device_uuid, connection.dialect)
    )
    rows = connection.execution_options(yield_per=chunk_rows).execute(statement)
    try:
        for device_uuid, text in rows:
            yield device_uuid, parse_histogram(text)
    finally:
        rows.close()  # a page or a gone client leaves rows unread
