"""A device's readings listed in date order: keyset pages in short transactions, merged across types, streamed."""
import heapq
import itertools

import sqlalchemy as sa

from canary.web.json import encode
from models import READING_COLUMNS, READING_KEYS, SensorData, arrival_order, db, matching

PAGE_CHUNKS = 10  # rows a keyset page reads, in chunks: enough to make each query's cost negligible


def stream_readings(device_uuid, chunk_rows, type=None, start=None, end=None, limit=None, order="asc"):
    """Yield lists of up to chunk_rows matching readings in date order, ties in arrival order.

    Each type is read in date order through the (device, type, date) index and the streams are
    merged, so ingest has no (device, date) index to keep up to date. Each stream reads keyset
    pages, each in a short transaction of its own: a slow reader holds no snapshot that would
    keep SQLite from checkpointing its WAL. The first next() reads the first pages and yields None.
    """
    descending, engine, arrival = order == "desc", db.engine, arrival_order()
    with engine.connect() as connection:
        types = [type] if type is not None else device_types(connection, device_uuid)
    query = matching(sa.select(*READING_COLUMNS, arrival), device_uuid, start=start, end=end)
    streams = [_keyset_pages(engine, query, reading_type, arrival, descending, limit, chunk_rows * PAGE_CHUNKS)
               for reading_type in types]
    firsts = [list(itertools.islice(stream, 1)) for stream in streams]  # runs each first query now
    yield None
    merged = heapq.merge(*(itertools.chain(first, stream) for first, stream in zip(firsts, streams)),
                         key=lambda row: (row[0], row[4]), reverse=descending)
    rows = itertools.islice(merged, limit)
    while chunk := list(itertools.islice(rows, chunk_rows)):
        yield [row[:4] for row in chunk]




def _keyset_pages(engine, query, reading_type, arrival, descending, limit, page_rows):
    """Yield one type's rows of a query, with their arrival order, a page per short transaction."""
    keys = [SensorData.date_created, arrival]
    base = (
        query.where(SensorData.type.is_(None) if reading_type is None else SensorData.type == reading_type)
        .order_by(*(key.desc() if descending else key for key in keys))
    )
    last, remaining = None, limit
    while remaining is None or remaining > 0:
        size = page_rows if remaining is None else min(page_rows, remaining)
        statement = base if last is None else base.where(_after(keys, last, descending))
        with engine.connect() as connection:
            rows = connection.execute(statement.limit(size)).all()
        yield from rows
        if len(rows) < size:
            return
        last = (rows[-1][0], rows[-1][4])
        remaining = None if remaining is None else remaining - len(rows)


def _after(keys, last, descending):
    """Return the condition for rows past `last` in (date, arrival) order, as an index range on date."""
    (date, arrival), (last_date, last_arrival) = keys, last
    if descending:
        return sa.and_(date <= last_date, sa.or_(date < last_date, arrival < last_arrival))
    return sa.and_(date >= last_date, sa.or_(date > last_date, arrival > last_arrival))


def device_types(connection, device_uuid):
    """Return the types among a device's readings, None included, with one index seek per type."""
    types, last = [], None
    while True:
        statement = sa.select(sa.func.min(SensorData.type)).where(SensorData.device_uuid == device_uuid)
        if last is not None:
            statement = statement.where(SensorData.type > last)
        last = connection.execute(statement).scalar()
        if last is None:
            break
        types.append(last)
    untyped = sa.select(sa.literal(1)).where(SensorData.device_uuid == device_uuid, SensorData.type.is_(None))
    if connection.execute(untyped.limit(1)).first():
        types.append(None)
    return types


def json_array(partitions):
    """Yield the readings of stream_readings as one JSON array, chunk by chunk, so memory stays flat."""
    separator = b"["
    for rows in partitions:
        yield separator + encode([dict(zip(READING_KEYS, row)) for row in rows])[1:-1]
        separator = b","
    yield b"[]\n" if separator == b"[" else b"]\n"
