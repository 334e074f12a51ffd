"""Time buckets: bucket widths, bucket edges in a time zone, and the smallest width that fits.

Fixed widths (seconds, minutes, hours) are aligned to multiples of the width since the Unix
epoch. Calendar widths (days, weeks) count local dates in a time zone from Monday 1969-12-29, so
weeks start on Mondays and every bucket starts at a local midnight. Everything here is pure:
instants are integer epoch seconds, zones are zoneinfo.ZoneInfo objects.
"""
import datetime as dt
import itertools
from dataclasses import dataclass

MAX_BUCKETS = 1000
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
CALENDAR_DAYS = {"d": 1, "w": 7}
# A Monday, and a local date before that of any instant >= 0, so positions are never negative.
CALENDAR_ORIGIN = dt.date(1969, 12, 29)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_SECOND = dt.timedelta(seconds=1)
_DAY = 86_400


class TooManyBuckets(ValueError):
    """The span needs more buckets than allowed; `fitting` is the smallest interval that fits."""

    def __init__(self, count, fitting, first, last):
        super().__init__(f"{count} buckets; {fitting} fits")
        self.count, self.fitting, self.first, self.last = count, fitting, first, last


class OutOfCalendar(ValueError):
    """A calendar bucket would fall outside the dates Python's calendar holds (years 1-9999)."""


@dataclass(frozen=True)
class Interval:
    """A bucket width: an amount of a unit ("" for bare seconds, or s, m, h, d, w)."""

    amount: int
    unit: str = ""

    @property
    def calendar(self):
        """Tell whether buckets follow local dates (days and weeks) rather than elapsed seconds."""
        return self.unit in CALENDAR_DAYS

    @property
    def step(self):
        """Return the size of one unit: local days for calendar units, seconds otherwise."""
        return CALENDAR_DAYS[self.unit] if self.calendar else UNIT_SECONDS[self.unit]

    @property
    def width(self):
        """Return the width of a bucket: in local days for days and weeks, in seconds otherwise."""
        return self.amount * self.step

    @property
    def seconds(self):
        """Return the nominal width in seconds (a day counted as 86,400 s)."""
        return self.amount * UNIT_SECONDS[self.unit]

    def label(self):
        """Return the interval as answers name it: seconds, or the duration for calendar units."""
        return str(self) if self.calendar else self.seconds

    def __str__(self):
        return f"{self.amount}{self.unit}"


def local_day(instant, zone):
    """Return the local date of an instant in a zone, as days since CALENDAR_ORIGIN."""
    try:
        return (dt.datetime.fromtimestamp(instant, zone).date() - CALENDAR_ORIGIN).days
    except (OverflowError, ValueError, OSError) as error:
        raise OutOfCalendar(f"instant {instant} is outside the calendar") from error


def local_midnight(day, zone):
    """Return the first instant whose local date is `day` days after CALENDAR_ORIGIN or later.

    That is local midnight, its first occurrence when clocks go back over it, or the end of the
    gap when clocks go forward over it.
    """
    try:
        naive = dt.datetime.combine(CALENDAR_ORIGIN + dt.timedelta(days=day), dt.time())
    except OverflowError as error:
        raise OutOfCalendar(f"day {day} is outside the calendar") from error
    naive_seconds = (naive - _NAIVE_EPOCH) // _SECOND

    def starts_day(instant):
        return local_day(instant, zone) >= day > local_day(instant - 1, zone)

    for fold in (0, 1):
        offset = naive.replace(tzinfo=zone, fold=fold).utcoffset() // _SECOND
        if starts_day(naive_seconds - offset):
            return naive_seconds - offset
    # Midnight falls inside a gap: find the transition. UTC offsets stay within a day.
    low, high = naive_seconds - 2 * _DAY, naive_seconds + 2 * _DAY
    while high - low > 1:
        middle = (low + high) // 2
        if local_day(middle, zone) >= day:
            high = middle
        else:
            low = middle
    return high


def position(interval, zone, instant):
    """Return where an instant lies on the interval's axis: epoch seconds, or local days."""
    return local_day(instant, zone) if interval.calendar else instant


def bucket_count(interval, zone, first, last):
    """Return how many buckets run from the one holding `first` to the one holding `last`."""
    return position(interval, zone, last) // interval.width - position(interval, zone, first) // interval.width + 1


def smallest_amount(low, high, limit):
    """Return the smallest n >= 1 with high // n - low // n < limit, for 0 <= low <= high.

    For every n in a block where low // n is one q, the condition is high < (q + limit) * n, so
    each block gives its smallest fitting n at once; (high - low) // n must stay below limit.
    """
    amount = (high - low) // limit + 1
    while True:
        quotient = low // amount
        block_end = low // quotient if quotient else None
        fitting = max(amount, high // (quotient + limit) + 1)
        if block_end is None or fitting <= block_end:
            return fitting
        amount = block_end + 1


def smallest_fitting(interval, zone, first, last, limit=MAX_BUCKETS):
    """Return the smallest interval of the same unit whose buckets from first to last fit the limit."""
    low = position(interval, zone, first) // interval.step
    high = position(interval, zone, last) // interval.step
    return Interval(smallest_amount(low, high, limit), interval.unit)


def bucket_edges(interval, zone, first, last, limit=MAX_BUCKETS):
    """Return the edges of the buckets from the one holding `first` to the one holding `last`.

    Bucket i is [edges[i], edges[i + 1]). Raise TooManyBuckets beyond `limit` buckets and
    OutOfCalendar when a calendar bucket would leave the years 1-9999.
    """
    count = bucket_count(interval, zone, first, last)
    if count > limit:
        raise TooManyBuckets(count, smallest_fitting(interval, zone, first, last, limit), first, last)
    first_bucket = position(interval, zone, first) // interval.width
    numbers = range(first_bucket, first_bucket + count + 1)
    if not interval.calendar:
        return [number * interval.width for number in numbers]
    edges = []
    for number in numbers:
        edge = local_midnight(number * interval.width, zone)
        if not edges or edge > edges[-1]:  # a date a zone skipped (Samoa's 2011-12-30) has no bucket
            edges.append(edge)
    return edges


@dataclass(frozen=True)
class Run:
    """Consecutive buckets of one width: bucket first + k starts at start + k * width."""

    start: int
    first: int
    width: int


def runs(edges):
    """Return the runs of equal-width buckets that the edges make, in time order."""
    result = []
    for number, (start, end) in enumerate(itertools.pairwise(edges)):
        if not result or result[-1].width != end - start:
            result.append(Run(start, number, end - start))
    return result
