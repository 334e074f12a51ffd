"""Reading statistics: pure functions over a value histogram, and the queries that feed them.

A histogram is a list of (value, count) pairs in ascending value order with every count > 0.
Values are integers, so a histogram states every statistic exactly, and histograms of disjoint
spans add up: the rollups (canary/statistics/) keep one per device, type and hour, day and week,
and merge them for any window, series bucket or fleet row; the raw readings' GROUP BY value gives
the same histogram where they do not serve.
"""
import bisect
import itertools
import logging
import operator
from fractions import Fraction

from canary.statistics import folding, rollups, windows
from models import db

log = logging.getLogger(__name__)

METRICS = ("min", "max", "median", "mean", "mode", "quartiles")
STATISTICS = ("min", "max", "mean", "median", "mode", "quartile_1", "quartile_3")


def as_number(number):
    """Return a whole number as an int and any other number as a float."""
    if isinstance(number, int):
        return number
    if number == int(number):
        return int(number)
    return float(number)


def exact_ratio(numerator, denominator):
    """Return numerator / denominator exactly rounded: an int when whole, else the nearest float."""
    if isinstance(numerator, int) and isinstance(denominator, int):
        quotient, remainder = divmod(numerator, denominator)
        return quotient if remainder == 0 else numerator / denominator  # int / int rounds correctly
    return as_number(Fraction(numerator) / Fraction(denominator))


def total(histogram):
    """Return how many readings the histogram counts."""
    return sum(map(operator.itemgetter(1), histogram))


def locate(histogram, rank):
    """Return (value, offset) for a 0-based rank: its value and its place among equal values."""
    seen = 0
    for value, count in histogram:
        if rank < seen + count:
            return value, rank - seen
        seen += count
    raise IndexError(f"rank {rank} is beyond {seen} readings")


class _Ranks:
    """A histogram's values and the running totals of their counts, to find any rank by bisection."""

    __slots__ = ("count", "counts", "ends", "values")

    def __init__(self, histogram):
        self.values, self.counts = zip(*histogram)
        self.ends = list(itertools.accumulate(self.counts))
        self.count = self.ends[-1]

    def value_at(self, rank):
        """Return the value at a 0-based rank."""
        return self.values[bisect.bisect_right(self.ends, rank)]

    def middle(self, first, length):
        """Return the median of the `length` sorted values starting at rank `first`."""
        values, ends = self.values, self.ends  # bisected inline: a fleet summary asks 300,000 times
        lower = values[bisect.bisect_right(ends, first + (length - 1) // 2)]
        if length % 2:
            return as_number(lower)
        return exact_ratio(lower + values[bisect.bisect_right(ends, first + length // 2)], 2)

    def hinges(self):
        """Return Tukey's hinges: the medians of the lower and upper halves, the median in both when odd."""
        half = (self.count + 1) // 2
        return self.middle(0, half), self.middle(self.count - half, half)


def median(histogram):
    """Return the median value; the mean of the two middle values for an even count."""
    ranks = _Ranks(histogram)
    return ranks.middle(0, ranks.count)


def median_rank(histogram):
    """Return the rank of the middle reading, the lower middle one for an even count."""
    return (total(histogram) - 1) // 2


def quartiles(histogram):
    """Return (q1, q3) by Tukey's hinges: the medians of the lower and upper halves.

    For an odd count the median belongs to both halves.
    """
    return _Ranks(histogram).hinges()


def mean(histogram):
    """Return the arithmetic mean of the values, exactly rounded."""
    whole = sum(itertools.starmap(operator.mul, histogram))
    if isinstance(whole, int):
        return exact_ratio(whole, total(histogram))
    # Tables made by other tools may hold REAL values, whose sum was rounded at every step.
    return as_number(Fraction(sum(Fraction(value) * count for value, count in histogram), total(histogram)))


def mode(histogram):
    """Return the most frequent value; the smallest such value on a tie."""
    return as_number(max(histogram, key=operator.itemgetter(1))[0])  # max keeps the first, values ascend


def describe(histogram):
    """Return the count and every statistic of a histogram; each statistic None when it is empty."""
    if not histogram:
        return {"count": 0, **dict.fromkeys(STATISTICS)}
    ranks = _Ranks(histogram)  # shared by the median and the hinges: describe runs once per bucket or device
    quartile_1, quartile_3 = ranks.hinges()
    values, counts = ranks.values, ranks.counts
    whole = sum(map(operator.mul, values, counts))
    return {
        "count": ranks.count,
        "min": as_number(values[0]),
        "max": as_number(values[-1]),
        "mean": exact_ratio(whole, ranks.count) if isinstance(whole, int) else mean(histogram),
        "median": ranks.middle(0, ranks.count),
        "mode": as_number(values[counts.index(max(counts))]),  # the first of equal counts: the smallest value
        "quartile_1": quartile_1,
        "quartile_3": quartile_3,
    }


def compute(metric, filters):
    """Return the JSON body for a metric over the matching readings, or None if none match.

    The histogram comes from the rollups where they serve (canary/statistics/windows.py), and one
    read snapshot holds for the histogram and the reading that min, max and median return.
    """
    with folding.snapshot(db.engine, filters) as (connection, current):
        source = windows.window(connection, filters, current)
        try:
            return _compute(metric, source)
        except rollups.InconsistentRollups:
            log.exception("Rollups and raw readings disagree; answering from the raw readings")
            return _compute(metric, windows.RawWindow(connection, filters))


def _compute(metric, source):
    histogram = source.histogram() if source is not None else []
    if not histogram:
        return None
    if metric in ("min", "max"):
        value, count = histogram[0] if metric == "min" else histogram[-1]
        return source.reading(value, count - 1, count)  # ties go to the latest reading
    if metric == "median":
        value, offset = locate(histogram, median_rank(histogram))
        return {**source.reading(value, offset, dict(histogram)[value]), "value": median(histogram)}
    if metric == "mean":
        return {"value": mean(histogram)}
    if metric == "mode":
        return {"value": mode(histogram)}
    if metric == "quartiles":
        quartile_1, quartile_3 = quartiles(histogram)
        return {"quartile_1": quartile_1, "quartile_3": quartile_3}
    raise ValueError(f"unknown metric {metric!r}")
