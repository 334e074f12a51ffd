"""The planner's arithmetic: signed covers and time-ordered partitions of windows into buckets and raw ranges."""
import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from canary.statistics import planner
from canary.statistics.planner import DAY, HOUR, LEVELS, ROLLUP_HORIZON, WEEK, Block, Raw

FIVE_YEARS = 5 * 365 * DAY
instants = st.integers(0, 60 * 365 * DAY)


def span(piece):
    """Return a piece's [low, high)."""
    return (piece.start, piece.start + piece.width) if isinstance(piece, Block) else (piece.low, piece.high + 1)


def probes(low, high, pieces):
    """Return the instants where a covering can change: every edge, and the seconds either side of it."""
    edges = {low, high, *(edge for piece in pieces for edge in span(piece))}
    return sorted({edge + shift for edge in edges for shift in (-1, 0, 1)})


def assert_aligned(piece):
    if isinstance(piece, Block):
        offset = dict(LEVELS)[piece.width]
        assert planner.bucket_start(piece.start, piece.width, offset) == piece.start


@settings(deadline=None)
@given(instants, instants)
@example(0, 1)
@example(1_711_926_000, 1_712_012_400)  # a Europe/London summer day, 1 April 2024: 23:00 to 23:00 UTC
@example(1_700_000_000 - 19_800, 1_700_086_400 - 19_800)  # an Asia/Kolkata day
@example(17, 17 + FIVE_YEARS + 12_345)
def test_cover_sums_to_the_window_at_every_instant(low, high):
    cover = planner.cover(low, high)
    changes = {}  # instant -> how the signed count of pieces holding it changes there
    for sign, piece in cover:
        start, end = span(piece)
        changes[start] = changes.get(start, 0) + sign
        changes[end] = changes.get(end, 0) - sign
    inside, events = 0, iter(sorted(changes.items()))
    event = next(events, None)
    for instant in probes(low, high, [piece for _, piece in cover]):
        while event is not None and event[0] <= instant:
            inside += event[1]
            event = next(events, None)
        expected = 1 if low <= instant < high else (-1 if high <= instant < low else 0)
        assert inside == expected, instant
    for _, piece in cover:
        assert_aligned(piece)


@settings(deadline=None)
@given(instants, instants)
@example(3, 3 + FIVE_YEARS)
def test_partition_tiles_the_window_in_time_order(low, high):
    pieces = planner.partition(low, high)
    if low >= high:
        assert pieces == []
        return
    spans = [span(piece) for piece in pieces]
    assert spans[0][0] == low and spans[-1][1] == high
    assert all(end == start for (_, end), (start, _) in itertools.pairwise(spans))
    for piece in pieces:
        assert_aligned(piece)
        if isinstance(piece, Raw):
            assert piece.high - piece.low < 2 * HOUR  # raw only at the edges, less than an hour each side


def test_five_years_take_a_few_hundred_pieces():
    low = 1_600_000_000 + 12_345
    cover, pieces = planner.cover(low, low + FIVE_YEARS), planner.partition(low, low + FIVE_YEARS)
    assert len(cover) <= 300 and len(pieces) <= 330
    assert sum(isinstance(piece, Raw) for piece in pieces) == 2


def test_london_summer_day_is_a_utc_day_and_two_hours():
    cover = planner.cover(1_711_926_000, 1_712_012_400)  # 1 April 2024 in Europe/London
    assert sorted(cover, key=lambda item: (item[1].width, item[1].start)) == [
        (1, Block(HOUR, 1_711_926_000)), (-1, Block(HOUR, 1_712_012_400)), (1, Block(DAY, 1_711_929_600))]


@pytest.mark.parametrize("block, count", [(Block(WEEK, -3 * DAY), 7), (Block(DAY, 0), 24), (Block(HOUR, 0), 0)])
def test_children_split_a_block_into_the_next_level(block, count):
    children = planner.children(block)
    assert len(children) == count
    assert sum(child.width for child in children) == (block.width if count else 0)


def test_windows_past_the_horizon_are_read_raw():
    cover = planner.cover(ROLLUP_HORIZON - DAY, 2**63)
    assert (1, Raw(ROLLUP_HORIZON, 2**63 - 1)) in cover
    assert all(span(piece)[1] <= 2**63 for _, piece in cover)


def test_a_sparse_span_raises_rather_than_listing_millions_of_buckets():
    with pytest.raises(planner.TooManyPieces):
        planner.partition(0, 2**61, limit=5_000)
    with pytest.raises(planner.TooManyPieces):
        planner.cover(0, 2**61, limit=5_000)
