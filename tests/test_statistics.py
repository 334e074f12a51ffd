"""metrics.py's pure functions over value histograms, checked against Python's statistics module."""
import statistics
from collections import Counter
from fractions import Fraction

import oracles
import pytest
from hypothesis import given
from hypothesis import strategies as st

import metrics

values_lists = st.lists(st.integers(0, 100), min_size=1, max_size=60)
# Few distinct values, so that ties and repeated middles are common.
tied_lists = st.lists(st.integers(0, 3), min_size=1, max_size=20)


def histogram(values):
    return sorted(Counter(values).items())


def tukey_hinges(values):
    ordered = sorted(values)
    half = (len(ordered) + 1) // 2
    return statistics.median(ordered[:half]), statistics.median(ordered[len(ordered) - half:])


def assert_number(actual, expected):
    assert actual == expected
    assert type(actual) is (int if expected == int(expected) else float)


@pytest.mark.parametrize(
    "number, expected",
    [(5, 5), (5.0, 5), (Fraction(10, 2), 5), (0, 0), (2.5, 2.5), (Fraction(1, 3), 1 / 3), (Fraction(73, 2), 36.5)],
)
def test_as_number_whole_is_int_other_is_float(number, expected):
    assert_number(metrics.as_number(number), expected)


@given(values_lists)
def test_total_counts_every_value(values):
    assert metrics.total(histogram(values)) == len(values)


@pytest.mark.parametrize(
    "rank, expected",
    [(0, (1, 0)), (1, (1, 1)), (2, (4, 0)), (3, (7, 0)), (4, (7, 1)), (5, (7, 2))],
)
def test_locate_returns_value_and_offset_among_equals(rank, expected):
    assert metrics.locate([(1, 2), (4, 1), (7, 3)], rank) == expected


@pytest.mark.parametrize("rank", [6, 100])
def test_locate_beyond_last_rank_raises(rank):
    with pytest.raises(IndexError):
        metrics.locate([(1, 2), (4, 1), (7, 3)], rank)


@given(values_lists)
def test_locate_matches_sorted_list(values):
    ordered = sorted(values)
    for rank, value in enumerate(ordered):
        assert metrics.locate(histogram(values), rank) == (value, rank - ordered.index(value))


@given(values_lists)
def test_median_rank_is_lower_middle(values):
    assert metrics.median_rank(histogram(values)) == (len(values) - 1) // 2


@given(values_lists)
def test_median_matches_statistics(values):
    assert_number(metrics.median(histogram(values)), statistics.median(values))


@given(values_lists)
def test_mean_matches_statistics(values):
    assert_number(metrics.mean(histogram(values)), statistics.mean(values))


@given(values_lists)
def test_mode_matches_smallest_multimode(values):
    assert_number(metrics.mode(histogram(values)), min(statistics.multimode(values)))


def assert_quartiles(values, expected):
    quartile_1, quartile_3 = metrics.quartiles(histogram(values))
    assert_number(quartile_1, expected[0])
    assert_number(quartile_3, expected[1])


@given(values_lists)
def test_quartiles_match_tukey_hinges(values):
    assert_quartiles(values, tukey_hinges(values))


@given(tied_lists)
def test_every_statistic_with_many_ties(values):
    counts = histogram(values)
    assert_number(metrics.median(counts), statistics.median(values))
    assert_number(metrics.mean(counts), statistics.mean(values))
    assert_number(metrics.mode(counts), min(statistics.multimode(values)))
    assert_quartiles(values, tukey_hinges(values))


@given(st.lists(st.integers(0, 100), min_size=1, max_size=30).map(lambda v: v + v))
def test_even_counts_average_the_two_middles(values):
    assert len(values) % 2 == 0
    assert_number(metrics.median(histogram(values)), statistics.median(values))
    assert_quartiles(values, tukey_hinges(values))


@given(st.lists(st.integers(0, 100), min_size=0, max_size=30).flatmap(
    lambda v: st.integers(0, 100).map(lambda extra: v + v + [extra])
))
def test_odd_counts_share_the_median_between_halves(values):
    assert len(values) % 2 == 1
    assert_number(metrics.median(histogram(values)), statistics.median(values))
    assert_quartiles(values, tukey_hinges(values))


@pytest.mark.parametrize("value", [0, 5, 100])
def test_single_value_is_every_statistic(value):
    counts = histogram([value])
    for result in (metrics.median(counts), metrics.mean(counts), metrics.mode(counts), *metrics.quartiles(counts)):
        assert_number(result, value)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([22, 22, 50, 100], (22, 75)),
        ([22, 50, 100], (36, 75)),
        ([5], (5, 5)),
        ([1, 2], (1, 2)),
        ([1, 2, 3, 4, 5, 6], (2, 5)),
    ],
)
def test_quartiles_examples(values, expected):
    assert_quartiles(values, expected)


@pytest.mark.parametrize(
    "values, median, mean, mode",
    [
        ([1, 2], 1.5, 1.5, 1),
        ([1, 2, 2, 3, 3], 2, 2.2, 2),
        ([100, 0, 100, 0], 50, 50, 0),
        ([1, 2, 4], 2, 7 / 3, 1),
        ([99, 100], 99.5, 99.5, 99),
    ],
)
def test_statistics_examples(values, median, mean, mode):
    counts = histogram(values)
    assert_number(metrics.median(counts), median)
    assert_number(metrics.mean(counts), mean)
    assert_number(metrics.mode(counts), mode)


@given(st.lists(st.integers(0, 100), max_size=60))
def test_describe_matches_statistics(values):
    described = metrics.describe(histogram(values))
    expected = oracles.describe(values)
    assert described == expected
    for key, value in expected.items():
        assert type(described[key]) is type(value), key


def test_describe_empty_histogram_is_count_zero_and_null_statistics():
    assert metrics.describe([]) == {"count": 0, **dict.fromkeys(metrics.STATISTICS)}


@given(st.lists(st.one_of(st.integers(-40, 60), st.integers(-400, 600).map(lambda tenths: tenths / 10)), max_size=40))
def test_describe_real_values_matches_statistics(values):
    # Tables written by other tools may hold REAL values, which take describe's general path.
    assert metrics.describe(histogram(values)) == oracles.describe(values)
