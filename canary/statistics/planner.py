"""Which rollup buckets and raw ranges make up a time window: pure arithmetic on epoch seconds.

Rollups are histograms per hour, per UTC day and per week from Monday 1969-12-29, so every week edge
is a day edge and every day edge an hour edge. A window is answered from whole buckets plus the
raw readings at its unaligned edges. Histograms can be subtracted as well as added, so `cover`
may round an edge to the nearer bucket edge and take off what lies beyond: a Europe/London day,
23:00 to 23:00 UTC in summer, is one UTC day plus an hour of the day before, minus its own last
hour. `partition` splits a window into pieces in time order, with no subtraction, to find where
a given reading lies.
"""
from dataclasses import dataclass

HOUR, DAY, WEEK = 3600, 86_400, 604_800
# Width and offset of each level, coarsest first: bucket start = (t + offset) // width * width - offset.
LEVELS = ((WEEK, 3 * DAY), (DAY, 0), (HOUR, 0))
# Rollups cover instants from 0 to this; later ones (far past any real reading) are always read raw, so
# no bucket edge computed here exceeds what a 64-bit column holds.
ROLLUP_HORIZON = 2**62


class TooManyPieces(ValueError):
    """A window would take more buckets than the caller's limit: a span so sparse that raw readings serve better."""


def _blocks(width, first, last, limit):
    if limit is not None and (last - first) // width > limit:
        raise TooManyPieces(f"{(last - first) // width} buckets of {width} s")
    return range(first, last, width)


@dataclass(frozen=True)
class Block:
    """One rollup bucket: the histogram of [start, start + width)."""

    width: int
    start: int


@dataclass(frozen=True)
class Raw:
    """The raw readings of [low, high], inclusive, as an index range reads them."""

    low: int
    high: int


def bucket_start(instant, width, offset):
    """Return the first second of the bucket of one level that holds an instant >= 0."""
    return (instant + offset) // width * width - offset


def nearest_edge(instant, width, offset):
    """Return the bucket edge of one level nearest to an instant (the later one on a tie)."""
    start = bucket_start(instant, width, offset)
    return start if instant - start < start + width - instant else start + width


def cover(low, high, levels=LEVELS, limit=None):
    """Return [(sign, piece)] whose signed histograms sum to that of [low, high): Blocks and Raws.

    At the coarsest level with a whole bucket between the edges nearest to low and high, the window
    is those buckets, plus [B, high) and minus [A, low) (each negative when it runs backwards),
    covered the same way at finer levels; what no level covers is read raw.
    """
    if low == high:
        return []
    if low > high:
        return [(-sign, piece) for sign, piece in cover(high, low, levels, limit)]
    if high > ROLLUP_HORIZON:
        return cover(low, min(high, ROLLUP_HORIZON), levels, limit) + _raw(max(low, ROLLUP_HORIZON), high)
    for index, (width, offset) in enumerate(levels):
        first, last = nearest_edge(low, width, offset), nearest_edge(high, width, offset)
        if first < last:
            finer = levels[index + 1:]
            blocks = [(1, Block(width, start)) for start in _blocks(width, first, last, limit)]
            return (blocks + cover(last, high, finer, limit)
                    + [(-sign, piece) for sign, piece in cover(first, low, finer, limit)])
    return _raw(low, high)


def _raw(low, high):
    return [(1, Raw(low, high - 1))] if low < high else []


def partition(low, high, levels=LEVELS, limit=None):
    """Return the pieces of [low, high) in time order: whole buckets inside it, raw ranges at its ends."""
    if low >= high:
        return []
    if high > ROLLUP_HORIZON:
        return (partition(low, min(high, ROLLUP_HORIZON), levels, limit)
                + [piece for _, piece in _raw(max(low, ROLLUP_HORIZON), high)])
    for index, (width, offset) in enumerate(levels):
        first = -(-(low + offset) // width) * width - offset  # the first edge at or after low
        last = bucket_start(high, width, offset)  # the last edge at or before high
        if first < last:
            finer = levels[index + 1:]
            return (partition(low, first, finer, limit)
                    + [Block(width, start) for start in _blocks(width, first, last, limit)]
                    + partition(last, high, finer, limit))
    return [Raw(low, high - 1)]


def children(block, levels=LEVELS):
    """Return the blocks of the next finer level that make up a block, in time order; [] for the finest."""
    widths = [width for width, _ in levels]
    index = widths.index(block.width)
    if index + 1 == len(widths):
        return []
    finer = widths[index + 1]
    return [Block(finer, start) for start in range(block.start, block.start + block.width, finer)]
