"""buckets.py's pure functions: widths, edges in time zones, runs and the smallest fitting width."""
import bisect
import datetime as dt
from zoneinfo import ZoneInfo

import oracles
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.statistics import buckets
from canary.statistics.buckets import Interval

ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham",
         "America/Santiago", "Pacific/Apia"]
zones = st.sampled_from(ZONES).map(ZoneInfo)
instants = st.integers(0, 4_102_444_800)  # 1970 to 2100
calendar_intervals = st.builds(Interval, st.integers(1, 12), st.sampled_from(["d", "w"]))
fixed_intervals = st.builds(Interval, st.integers(1, 10_000), st.sampled_from(["", "s", "m", "h"]))


@pytest.mark.parametrize(
    "interval, calendar, seconds, label, text",
    [(Interval(300), False, 300, 300, "300"), (Interval(90, "s"), False, 90, 90, "90s"),
     (Interval(5, "m"), False, 300, 300, "5m"), (Interval(2, "h"), False, 7200, 7200, "2h"),
     (Interval(1, "d"), True, 86_400, "1d", "1d"), (Interval(7, "d"), True, 604_800, "7d", "7d"),
     (Interval(2, "w"), True, 1_209_600, "2w", "2w")],
)
def test_interval_properties(interval, calendar, seconds, label, text):
    assert (interval.calendar, interval.seconds, interval.label(), str(interval)) == (calendar, seconds, label, text)


@given(fixed_intervals, instants, st.integers(0, 10**7))
def test_fixed_edges_are_multiples_of_the_width_around_the_span(interval, first, length):
    last = first + length
    try:
        edges = buckets.bucket_edges(interval, ZoneInfo("UTC"), first, last)
    except buckets.TooManyBuckets:
        assert (last // interval.seconds) - (first // interval.seconds) + 1 > buckets.MAX_BUCKETS
        return
    assert edges == oracles.edges(str(interval), ZoneInfo("UTC"), first, last)
    assert all(edge % interval.seconds == 0 for edge in edges)
    assert edges[0] <= first < edges[1] and edges[-2] <= last < edges[-1]


@settings(max_examples=300)
@given(calendar_intervals, zones, instants, st.integers(0, 200 * 86_400))
def test_calendar_edges_match_a_bisection_oracle(interval, zone, first, length):
    last = first + length
    try:
        edges = buckets.bucket_edges(interval, zone, first, last)
    except buckets.TooManyBuckets:
        return
    expected = oracles.edges(str(interval), zone, first, last)
    assert edges == sorted(set(expected))  # a date the zone skipped has no bucket of its own
    assert edges[0] <= first < edges[1] and edges[-2] <= last < edges[-1]


@settings(max_examples=300)
@given(calendar_intervals, zones, instants)
def test_calendar_buckets_start_at_local_midnight_weeks_on_monday(interval, zone, instant):
    edges = buckets.bucket_edges(interval, zone, instant, instant)
    for edge in edges:
        local, before = dt.datetime.fromtimestamp(edge, zone), dt.datetime.fromtimestamp(edge - 1, zone)
        assert local.date() > before.date()  # the first second of a local date
        assert local.time() == dt.time() or local.utcoffset() != before.utcoffset()  # or clocks jumped over 00:00
        if (local.date() - before.date()).days == 1:  # not the day after a date the zone skipped
            assert (local.date() - oracles.ORIGIN).days % interval.width == 0
            assert interval.unit != "w" or local.weekday() == 0


@pytest.mark.parametrize(
    "zone, date, hours",
    [("Europe/London", "2024-03-31", 23), ("Europe/London", "2024-10-27", 25),
     ("America/New_York", "2024-03-10", 23), ("America/New_York", "2024-11-03", 25),
     ("Australia/Lord_Howe", "2024-10-06", 23.5), ("Australia/Lord_Howe", "2024-04-07", 24.5),
     ("Pacific/Chatham", "2024-09-29", 23), ("Pacific/Chatham", "2024-04-07", 25),
     ("America/Santiago", "2023-09-03", 23), ("America/Santiago", "2024-04-06", 25),
     ("Asia/Kolkata", "2024-03-31", 24), ("UTC", "2024-03-31", 24), ("Europe/London", "2024-06-01", 24)],
)
def test_day_bucket_lengths_across_clock_changes(zone, date, hours):
    zone = ZoneInfo(zone)
    noon = dt.datetime.combine(dt.date.fromisoformat(date), dt.time(12), tzinfo=zone)
    edges = buckets.bucket_edges(Interval(1, "d"), zone, int(noon.timestamp()), int(noon.timestamp()))
    assert edges[1] - edges[0] == hours * 3600
    assert dt.datetime.fromtimestamp(edges[0], zone).date() == noon.date()


def test_midnight_in_a_gap_starts_the_day_when_clocks_resume():
    zone = ZoneInfo("America/Santiago")  # 2023-09-03: clocks jump from 00:00 to 01:00
    edge = buckets.local_midnight((dt.date(2023, 9, 3) - oracles.ORIGIN).days, zone)
    assert dt.datetime.fromtimestamp(edge, zone).replace(tzinfo=None) == dt.datetime(2023, 9, 3, 1)


def test_skipped_date_has_no_bucket():
    zone = ZoneInfo("Pacific/Apia")  # 2011-12-30 did not happen there
    noon = int(dt.datetime(2011, 12, 29, 12, tzinfo=zone).timestamp())
    edges = buckets.bucket_edges(Interval(1, "d"), zone, noon, noon + 86_400)
    dates = [dt.datetime.fromtimestamp(edge, zone).date().isoformat() for edge in edges]
    assert dates == ["2011-12-29", "2011-12-31", "2012-01-01"]


@pytest.mark.parametrize("instant", [253_402_300_800, 2**62, 2**63 - 1])
def test_calendar_beyond_year_9999_is_out_of_calendar(instant):
    with pytest.raises(buckets.OutOfCalendar):
        buckets.bucket_edges(Interval(1, "d"), ZoneInfo("UTC"), instant, instant)
    assert buckets.bucket_edges(Interval(1), ZoneInfo("UTC"), instant, instant)[0] == instant


def test_calendar_width_beyond_year_9999_is_out_of_calendar():
    with pytest.raises(buckets.OutOfCalendar):
        buckets.bucket_edges(Interval(3_000_000, "d"), ZoneInfo("UTC"), 0, 0)


@given(st.integers(0, 3000), st.integers(0, 3000), st.integers(1, 30))
def test_smallest_amount_matches_brute_force(low, length, limit):
    high = low + length
    expected = next(n for n in range(1, high + 2) if high // n - low // n < limit)
    assert buckets.smallest_amount(low, high, limit) == expected


@pytest.mark.parametrize("low, high", [(0, 2**63 - 1), (2**62, 2**62 + 3 * 10**12), (4 * 10**18, 2**63 - 1),
                                       (1_700_000_000, 1_700_000_000)])
def test_smallest_amount_fits_on_huge_spans(low, high):
    amount = buckets.smallest_amount(low, high, 1000)
    assert high // amount - low // amount < 1000
    assert amount == 1 or high // (amount - 1) - low // (amount - 1) >= 1000


@settings(max_examples=200)
@given(st.one_of(fixed_intervals, calendar_intervals), zones, instants, st.integers(0, 400 * 86_400),
       st.integers(1, 50))
def test_too_many_buckets_names_the_smallest_interval_that_fits(interval, zone, first, length, limit):
    last = first + length
    try:
        buckets.bucket_edges(interval, zone, first, last, limit)
    except buckets.TooManyBuckets as error:
        fitting = error.fitting
        assert error.count == buckets.bucket_count(interval, zone, first, last) > limit
        assert fitting.unit == interval.unit
        assert buckets.bucket_count(fitting, zone, first, last) <= limit
        smaller = Interval(fitting.amount - 1, fitting.unit)
        assert fitting.amount == 1 or buckets.bucket_count(smaller, zone, first, last) > limit
    else:
        assert buckets.bucket_count(interval, zone, first, last) <= limit


@settings(max_examples=200)
@given(st.one_of(fixed_intervals, calendar_intervals), zones, instants, st.integers(0, 300 * 86_400),
       st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20))
def test_runs_number_every_instant_as_the_edges_do(interval, zone, first, length, fractions):
    try:
        edges = buckets.bucket_edges(interval, zone, first, first + length)
    except buckets.TooManyBuckets:
        return
    runs = buckets.runs(edges)
    assert runs[0].start == edges[0] and runs[0].first == 0
    for fraction in fractions:
        instant = edges[0] + int(fraction * (edges[-1] - edges[0]))
        run = runs[bisect.bisect_right([run.start for run in runs], instant) - 1]
        assert run.first + (instant - run.start) // run.width == bisect.bisect_right(edges, instant) - 1


def test_runs_of_a_utc_calendar_are_one_run():
    edges = buckets.bucket_edges(Interval(1, "d"), ZoneInfo("UTC"), 1_672_531_200, 1_672_531_200 + 364 * 86_400)
    assert buckets.runs(edges) == [buckets.Run(1_672_531_200, 0, 86_400)]


def test_runs_split_at_clock_changes():
    zone = ZoneInfo("Europe/London")
    edges = buckets.bucket_edges(Interval(1, "d"), zone, 1_704_067_200, 1_735_603_200)  # 2024
    assert [run.width for run in buckets.runs(edges)] == [86_400, 82_800, 86_400, 90_000, 86_400]
