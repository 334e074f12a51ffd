"""One device's readings of one type in one time window: its histogram, and the reading at a given place.

From the rollups when they hold the device's readings: the window's whole hour, day and week
buckets plus the raw readings at its edges, and for the reading itself, the bucket that holds
it, then its finer buckets, then an hour's raw readings. From the raw readings otherwise (before
a rebuild has reached the device, for values the rollups cannot hold, or for spans too sparse
for buckets to pay): slower, and just as exact.
"""
import functools

import sqlalchemy as sa

from canary.statistics import planner, rollups
from canary.statistics.planner import Block
from models import READING_COLUMNS, SensorData, arrival_order, matching

MAX_PIECES = 5_000  # past this many buckets the window is sparse enough to read raw


def fetch_span(connection, filters, current=None):
    """Return the first and last date_created >= 0 of the matching readings, or None if none match.

    From `current`, the snapshot's status row (canary.statistics.rollups.status), which has read them for
    these filters; otherwise two seeks to either end of the index, in one statement.
    """
    if current is None:
        given = rollups.given_filters(filters)
        current = connection.execute(_span_statement(tuple(given)), given).one()
    return None if current.first is None else (current.first, current.last)


@functools.cache  # statements are built once per shape of filters: building one costs more than a seek
def _span_statement(names):
    first, last = rollups.span_columns(names)
    return sa.select(first.label("first"), last.label("last"))


def fetch_histogram(connection, filters):
    """Return the histogram of the readings that match the filters, in one indexed pass over them."""
    statement = matching(sa.select(SensorData.value, sa.func.count()), **filters).group_by(SensorData.value)
    return sorted((value, count) for value, count in connection.execute(statement) if value is not None)


def fetch_reading(connection, filters, value, position, count):
    """Return the reading at `position` among the `count` readings with this value, in date order.

    The time index has no order by value, so the scan for it starts from the nearer end.
    """
    from_end = position > (count - 1) // 2
    given = rollups.given_filters(filters)
    statement = _reading_statement(tuple(given), from_end, connection.dialect.name)
    skip = count - 1 - position if from_end else position
    return connection.execute(statement, {**given, "reading_value": value, "skip": skip}).one()._asdict()


@functools.cache
def _reading_statement(names, from_end, dialect):
    direction = sa.desc if from_end else sa.asc
    return (
        matching(sa.select(*READING_COLUMNS), **rollups.bound_filters(names))
        .where(SensorData.value == sa.bindparam("reading_value"))
        .order_by(direction(SensorData.date_created), direction(arrival_order()))
        .limit(1)
        .offset(sa.bindparam("skip"))
    )


class RawWindow:
    """A window read from the raw readings."""

    def __init__(self, connection, filters):
        self.connection, self.filters = connection, filters

    def histogram(self):
        """Return the window's histogram, [(value, count)] ascending."""
        return fetch_histogram(self.connection, self.filters)

    def reading(self, value, position, count):
        """Return the reading at `position` among the window's `count` readings of this value, in date order."""
        return fetch_reading(self.connection, self.filters, value, position, count)


class RollupWindow:
    """A window read from its pieces in time order: whole buckets, and raw ranges at its edges."""

    def __init__(self, connection, filters, pieces):
        self.connection, self.filters, self.pieces = connection, filters, pieces
        self.found = rollups.histograms(connection, filters["device_uuid"], filters["type"], pieces)

    def histogram(self):
        return rollups.combine([(1, piece) for piece in self.pieces], self.found)

    def reading(self, value, position, count):
        pieces, found = self.pieces, self.found
        while True:
            for piece in pieces:
                here = found.get(piece, {}).get(value, 0)
                if position < here:
                    break
                position -= here
            else:
                raise rollups.InconsistentRollups(f"no reading of value {value} at its place")
            finer = planner.children(piece) if isinstance(piece, Block) else []
            if not finer:
                return self._raw_reading(piece, value, position, here)
            pieces = finer
            found = rollups.block_histograms(self.connection, self.filters["device_uuid"], self.filters["type"],
                                             finer)

    def _raw_reading(self, piece, value, position, count):
        if isinstance(piece, Block):
            low, high = piece.start, piece.start + piece.width - 1
        else:
            low, high = piece.low, piece.high
        filters = {**self.filters, "start": low, "end": high}
        return fetch_reading(self.connection, filters, value, position, count)


def window(connection, filters, current):
    """Return the window the filters describe (device_uuid and type, optional start and end), or None if empty.

    From the rollups where they serve; an inconsistency between them and the raw readings (which
    only a bug could cause) falls back to the raw readings too. `current` is the snapshot's
    status row for these filters (canary.statistics.rollups.status), None where it could not be read.
    """
    if not rollups.serving(connection, filters["device_uuid"], filters["type"], current):
        return RawWindow(connection, filters)
    span = fetch_span(connection, filters, current)
    if span is None:
        return None
    try:
        pieces = planner.partition(span[0], span[1] + 1, limit=MAX_PIECES)
    except planner.TooManyPieces:
        return RawWindow(connection, filters)
    return RollupWindow(connection, filters, pieces)

