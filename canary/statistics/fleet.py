"""The fleet summary: a row of statistics per device with readings of one type in a window, sorted and paged.

From the rollups when they hold every device's readings: the window is whole buckets plus or
minus raw edges (the same for every device), each bucket's rows come in device order, and the
streams merge into one histogram per device. An hour's rollups name the devices with readings in
it, so the raw readings of an edge are read device by device through the readings index. Rows
are sorted in memory as encoded JSON (a few hundred bytes a device), except for the default order
over whole buckets, whose page of devices the rollups' totals give directly. From the raw
readings otherwise, or where a sample of the rollup rows finds about one reading a row, in one
pass that the database sorts by count.
"""
import heapq
import itertools
import operator
import sys

import msgspec
import sqlalchemy as sa

import metrics
from canary.database import stream_rows
from canary.statistics import folding, groupings, planner, rollups, windows
from canary.statistics.planner import HOUR, Block, Raw
from canary.web.json import encode
from models import Rollup, db

DEFAULT_SORT = "number_of_readings"
STREAM_ROWS = 2000  # rows a stream fetches at a time: each piece's rows stream, never all at once
DENSE = 2  # readings a rollup row holds on average, from which the rollups answer faster than the readings
SAMPLE_ROWS = 64  # rows of each bucket that estimate it
ARMS_PER_QUERY = 400  # SQLite refuses a UNION of more than 500 SELECTs: a longer cover merges several queries
_decode = msgspec.json.Decoder(dict[int, int]).decode
_decode_values = msgspec.json.Decoder(list[int]).decode


def summary_row(device_uuid, histogram):
    """Return a device's row of the summary."""
    statistics = metrics.describe(histogram)
    return {"device_uuid": device_uuid, "number_of_readings": statistics["count"],
            "max_reading_value": statistics["max"], "median_reading_value": statistics["median"],
            "mean_reading_value": statistics["mean"], "quartile_1_value": statistics["quartile_1"],
            "quartile_3_value": statistics["quartile_3"]}


def summary(type, start=None, end=None, limit=None, offset=0, sort=DEFAULT_SORT, order=None, chunk_rows=1000):
    """Yield the summary as pieces of one JSON array; the first next() runs the queries and yields None."""
    order = order or ("asc" if sort == "device_uuid" else "desc")
    with folding.snapshot(db.engine) as (connection, current):
        rows = _rollup_rows(connection, current, type, start, end, sort, order, limit, offset)
        if rows is None:
            rows = _raw_rows(connection, type, start, end, sort, order, limit, offset, chunk_rows)
        yield None
        separator, rows = b"[", iter(rows)
        try:
            while chunk := list(itertools.islice(rows, 500)):
                yield separator + b",".join(chunk)
                separator = b","
        finally:
            if hasattr(rows, "close"):
                rows.close()
        yield b"[]\n" if separator == b"[" else b"]\n"


def _ordered(rows, sort, order, limit, offset):
    """Return rows [(row dict)] sorted by one statistic (ties by device) and paged, each encoded as JSON."""
    keyed = []
    for row in rows:
        value = row[sort]
        key = (value if order == "asc" or sort == "device_uuid" else -value, row["device_uuid"])
        keyed.append((key, encode(row)))
    keyed.sort(key=lambda item: item[0], reverse=sort == "device_uuid" and order == "desc")
    end = None if limit is None else offset + limit
    return [encoded for _, encoded in keyed[offset:end]]


def _raw_rows(connection, type, start, end, sort, order, limit, offset, chunk_rows):
    devices = groupings.device_histograms(connection, chunk_rows, type, start, end)
    if sort != DEFAULT_SORT or order != "desc":
        return _ordered((summary_row(*device) for device in devices), sort, order, limit, offset)

    def in_the_databases_order():
        try:
            stop = None if limit is None else min(offset + limit, sys.maxsize)  # islice takes no larger stop
            for device in itertools.islice(devices, offset, stop):
                yield encode(summary_row(*device))
        finally:
            devices.close()

    return in_the_databases_order()


def _rollup_rows(connection, current, type, start, end, sort, order, limit, offset):
    """Return the rows from the rollups, or None where they cannot answer (not whole, or too sparse a span)."""
    if not rollups.fleet_serving(connection, current):
        return None
    span = _span(connection, type, start, end)
    if span is None:
        return []
    try:
        cover = planner.cover(span[0], span[1] + 1, limit=windows.MAX_PIECES)
    except planner.TooManyPieces:
        return None
    if any(isinstance(piece, Raw) and piece.high >= planner.ROLLUP_HORIZON for _, piece in cover):
        return None  # no hour's rollups name the devices there
    if _readings_per_row(connection, type, cover) < DENSE:
        return None  # about a rollup row a reading: merging the rows costs more than grouping the readings
    excepted = rollups.excepted_devices(connection, type)
    if (sort, order) == (DEFAULT_SORT, "desc") and limit is not None and not excepted and all(
            sign > 0 and isinstance(piece, Block) for sign, piece in cover):
        return _page_by_totals(connection, type, [piece for _, piece in cover], limit, offset)
    rows = (summary_row(device, histogram) for device, histogram in _device_histograms(connection, type, cover)
            if histogram and device not in excepted)
    raw = (summary_row(device, windows.fetch_histogram(connection, {"device_uuid": device, "type": type,
                                                                    "start": start, "end": end}))
           for device in sorted(excepted))
    counted = (row for row in itertools.chain(rows, raw) if row["number_of_readings"])
    return _ordered(counted, sort, order, limit, offset)


def _span(connection, type, start, end):
    """Return the window's first and last second: the filters, or the span of the type's hourly rollups."""
    if start is not None and end is not None:
        return start, end
    bounds = connection.execute(sa.select(sa.func.min(Rollup.bucket), sa.func.max(Rollup.bucket)).where(
        Rollup.type == type, Rollup.level == HOUR)).first()
    if bounds[0] is None:
        return None
    return (bounds[0] if start is None else start), (bounds[1] + HOUR - 1 if end is None else end)


def _readings_per_row(connection, type, cover):
    """Return how many readings a rollup row of the cover's buckets holds, from a sample of each bucket's rows."""
    blocks = [piece for sign, piece in cover if sign > 0 and isinstance(piece, Block)][:ARMS_PER_QUERY]
    if not blocks:
        return DENSE
    arms = [f"SELECT * FROM (SELECT total FROM rollups WHERE type = :type AND level = CAST(:width_{n} AS INTEGER) "
            f"AND bucket = CAST(:start_{n} AS BIGINT) LIMIT {SAMPLE_ROWS}) AS sample_{n}" for n in range(len(blocks))]
    parameters = {"type": type}
    for number, block in enumerate(blocks):
        parameters.update({f"width_{number}": block.width, f"start_{number}": block.start})
    rows, readings = connection.execute(sa.text(f"SELECT COUNT(*), SUM(total) FROM ({' UNION ALL '.join(arms)}) "
                                                f"AS samples"), parameters).one()
    return readings / rows if rows else DENSE


def _page_by_totals(connection, type, blocks, limit, offset):
    """Return a page of rows, most readings first, from whole buckets: the rollups' totals choose the devices."""
    total = sa.func.sum(sa.cast(Rollup.total, sa.Integer))  # a bucket's count fits; PostgreSQL sums ints fast
    totals = sa.select(Rollup.device_uuid, total.label("total")).where(
        Rollup.type == type, sa.tuple_(Rollup.level, Rollup.bucket).in_([(b.width, b.start) for b in blocks])
    ).group_by(Rollup.device_uuid).having(total > 0)
    page = connection.execute(totals.order_by(sa.desc("total"), Rollup.device_uuid).limit(limit).offset(offset)).all()
    devices = [device for device, _ in page]
    if not devices:
        return []
    found = {}
    for device, text in connection.execute(sa.select(Rollup.device_uuid, sa.cast(Rollup.hist, sa.Text)).where(
            Rollup.type == type, Rollup.device_uuid.in_(devices),
            sa.tuple_(Rollup.level, Rollup.bucket).in_([(b.width, b.start) for b in blocks]))):
        histogram = found.setdefault(device, {})
        for value, count in _decode(text).items():
            histogram[value] = histogram.get(value, 0) + count
    return [encode(summary_row(device, sorted(found[device].items()))) for device in devices]


def _device_histograms(connection, type, cover):
    """Yield (device, histogram) in device order: a query merges every signed piece's rows by device.

    Each piece is one arm of a UNION ALL, its rows in device order (a bucket's histograms by the
    rollups' key; a raw range's readings through the devices its hour's rollup names), and the
    database merges the arms as it reads them (and heapq the queries, past ARMS_PER_QUERY arms), so
    rows arrive device by device and nothing is held but one device's counts.
    """
    arms, parameters = [], {"type": type, "hour_width": HOUR}
    for sign, piece in cover:
        for part in [piece] if isinstance(piece, Block) else _split_at_hours(piece):
            number = len(arms)
            if isinstance(part, Block):
                arms.append(f"SELECT device_uuid, {sign} AS sign, CAST(hist AS TEXT) AS hist, NULL AS value_list "
                            f"FROM rollups WHERE type = :type AND level = CAST(:width_{number} AS INTEGER) "
                            f"AND bucket = CAST(:start_{number} AS BIGINT)")
                parameters.update({f"width_{number}": part.width, f"start_{number}": part.start})
            else:
                arms.append(_raw_arm(connection, number, sign))
                parameters.update({f"low_{number}": part.low, f"high_{number}": part.high,
                                   f"hour_{number}": planner.bucket_start(part.low, HOUR, 0)})
    if connection.dialect.name == "postgresql":
        # Merging 100,000 devices' rows sorts them in memory rather than in temporary files.
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    streams = [stream_rows(connection, " UNION ALL ".join(f"SELECT * FROM ({arm}) AS arm_{n}" for n, arm in part)
                           + " ORDER BY device_uuid", parameters, STREAM_ROWS)
               for part in _batches(list(enumerate(arms)), ARMS_PER_QUERY)]
    rows = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda row: row[0])
    for device, pieces in itertools.groupby(rows, operator.itemgetter(0)):
        yield device, _merged(device, pieces)


def _batches(items, size):
    """Return items in lists of at most size."""
    return [items[first:first + size] for first in range(0, len(items), size)]


def _merged(device, pieces):
    """Return the sum of a device's signed pieces as a histogram, [(value, count)] ascending, counts > 0."""
    total = None
    for _, sign, text, values in pieces:
        if total is None:
            if text is not None and sign == 1:  # usually the coarsest bucket: taken whole
                total = _decode(text)
                continue
            total = {}
        if text is None:  # a raw range's values
            for value in _decode_values(values):
                total[value] = total.get(value, 0) + sign
        elif sign == 1:
            for value, count in _decode(text).items():
                total[value] = total.get(value, 0) + count
        else:
            for value, count in _decode(text).items():
                total[value] = total.get(value, 0) - count
    histogram = sorted(total.items())
    if 0 in total.values():
        histogram = [item for item in histogram if item[1]]
    if histogram and min(total.values()) < 0:
        raise rollups.InconsistentRollups(f"negative count for {device}")
    return histogram


def _raw_arm(connection, number, sign):
    """Return the SELECT of one raw range's values, a JSON array a device, of the devices its hour's rollup names.

    Grouped by device alone, in the order the rollups give the devices: counting by value in SQL would sort.
    """
    values = "json_group_array(r.value)" if connection.dialect.name == "sqlite" else "json_agg(r.value)"
    return (f"SELECT u.device_uuid, {sign} AS sign, NULL AS hist, CAST({values} AS TEXT) AS value_list "
            f"FROM rollups AS u JOIN readings AS r ON r.device_uuid = u.device_uuid AND r.type = u.type "
            f"AND r.date_created BETWEEN CAST(:low_{number} AS BIGINT) AND CAST(:high_{number} AS BIGINT) "
            f"WHERE u.type = :type AND u.level = CAST(:hour_width AS INTEGER) "
            f"AND u.bucket = CAST(:hour_{number} AS BIGINT) AND r.value IS NOT NULL GROUP BY u.device_uuid")


def _split_at_hours(raw):
    """Return a raw range as ranges within one hour each."""
    pieces, low = [], raw.low
    while low <= raw.high:
        high = min(raw.high, planner.bucket_start(low, HOUR, 0) + HOUR - 1)
        pieces.append(Raw(low, high))
        low = high + 1
    return pieces
