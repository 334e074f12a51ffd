"""Reading statistics: pure functions over a value histogram, and the queries that feed them.

A histogram is a list of (value, count) pairs in ascending value order with every count > 0.
Values are bounded integers, so one GROUP BY over the filtered readings yields it exactly.
"""
from fractions import Fraction

import sqlalchemy as sa

from models import READING_COLUMNS, Reading, arrival_order, db, matching

METRICS = ("min", "max", "median", "mean", "mode", "quartiles")


def as_number(number):
    """Return a whole number as an int and any other number as a float."""
    if number == int(number):
        return int(number)
    return float(number)


def total(histogram):
    """Return how many readings the histogram counts."""
    return sum(count for _, count in histogram)


def locate(histogram, rank):
    """Return (value, offset) for a 0-based rank: its value and its place among equal values."""
    seen = 0
    for value, count in histogram:
        if rank < seen + count:
            return value, rank - seen
        seen += count
    raise IndexError(f"rank {rank} is beyond {seen} readings")


def _middle(histogram, first, length):
    """Return the median of the `length` sorted values starting at rank `first`."""
    lower = locate(histogram, first + (length - 1) // 2)[0]
    if length % 2:
        return as_number(lower)
    upper = locate(histogram, first + length // 2)[0]
    return as_number((Fraction(lower) + Fraction(upper)) / 2)


def median(histogram):
    """Return the median value; the mean of the two middle values for an even count."""
    return _middle(histogram, 0, total(histogram))


def median_rank(histogram):
    """Return the rank of the middle reading, the lower middle one for an even count."""
    return (total(histogram) - 1) // 2


def quartiles(histogram):
    """Return (q1, q3) by Tukey's hinges: the medians of the lower and upper halves.

    For an odd count the median belongs to both halves.
    """
    count = total(histogram)
    half = (count + 1) // 2
    return _middle(histogram, 0, half), _middle(histogram, count - half, half)


def mean(histogram):
    """Return the arithmetic mean of the values, exactly rounded."""
    return as_number(Fraction(sum(Fraction(value) * count for value, count in histogram), total(histogram)))


def mode(histogram):
    """Return the most frequent value; the smallest such value on a tie."""
    return as_number(min(histogram, key=lambda pair: (-pair[1], pair[0]))[0])


def fetch_histogram(filters):
    """Return the histogram of the readings that match the filters, in one indexed pass."""
    statement = matching(sa.select(Reading.value, sa.func.count()), **filters).group_by(Reading.value)
    return sorted((value, count) for value, count in db.session.execute(statement) if value is not None)


def fetch_reading(filters, value, position, count):
    """Return the reading at `position` among the `count` readings with this value, in date order.

    The time index has no order by value, so the scan for it starts from the nearer end.
    """
    from_end = position > (count - 1) // 2
    direction = sa.desc if from_end else sa.asc
    statement = (
        matching(sa.select(*READING_COLUMNS), **filters)
        .where(Reading.value == value)
        .order_by(direction(Reading.date_created), direction(arrival_order()))
        .limit(1)
        .offset(count - 1 - position if from_end else position)
    )
    return db.session.execute(statement).one()._asdict()


def compute(metric, filters):
    """Return the JSON body for a metric over the matching readings, or None if none match."""
    histogram = fetch_histogram(filters)
    if not histogram:
        return None
    if metric in ("min", "max"):
        value, count = histogram[0] if metric == "min" else histogram[-1]
        return fetch_reading(filters, value, count - 1, count)  # ties go to the latest reading
    if metric == "median":
        value, offset = locate(histogram, median_rank(histogram))
        return {**fetch_reading(filters, value, offset, dict(histogram)[value]), "value": median(histogram)}
    if metric == "mean":
        return {"value": mean(histogram)}
    if metric == "mode":
        return {"value": mode(histogram)}
    if metric == "quartiles":
        quartile_1, quartile_3 = quartiles(histogram)
        return {"quartile_1": quartile_1, "quartile_3": quartile_3}
    raise ValueError(f"unknown metric {metric!r}")
