"""groupings.py: the folded histogram text, and the grouped queries on both backends."""
import bisect
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canary.ingest.store import insert_readings
from canary.statistics import buckets, groupings
from models import db

counts = st.dictionaries(st.integers(0, 100), st.integers(1, 10**6), min_size=1, max_size=101)


@given(counts, st.randoms())
def test_parse_histogram_reads_pairs_in_any_order_into_value_order(counts, rng):
    pairs = list(counts.items())
    rng.shuffle(pairs)
    text = ",".join(f"{value},{count}" for value, count in pairs)
    assert groupings.parse_histogram(text) == sorted(counts.items())


def test_parse_histogram_keeps_real_values():
    assert groupings.parse_histogram("2.5,3,1,2") == [(1, 2), (2.5, 3)]


@pytest.mark.parametrize("runs", [
    [buckets.Run(1000, 0, 60)],
    [buckets.Run(1000, 0, 60), buckets.Run(1600, 10, 30), buckets.Run(1690, 13, 90)],
    [buckets.Run(1000 + 70 * index, index, 70 if index % 2 else 71) for index in range(17)],
])
def test_bucket_histograms_number_buckets_as_the_runs_do(app, device, runs):
    last = runs[-1].start + 3 * runs[-1].width
    rng = random.Random(len(runs))
    dates = [rng.randrange(runs[0].start, last) for _ in range(300)]
    dates += [run.start for run in runs] + [run.start - 1 for run in runs[1:]]
    starts = [run.start for run in runs]
    expected = {}
    for date in dates:
        run = runs[bisect.bisect_right(starts, date) - 1]
        expected.setdefault(run.first + (date - run.start) // run.width, Counter())[date % 101] += 1
    filters = {"device_uuid": device, "type": "temperature", "start": runs[0].start, "end": last}
    with app.app_context():
        insert_readings([{"device_uuid": device, "type": "temperature", "value": date % 101, "date_created": date}
                         for date in dates], "device_batch")
        with db.engine.connect() as connection:
            numbered = groupings.fetch_bucket_histograms(connection, filters, runs)
    assert numbered == {number: sorted(counts.items()) for number, counts in expected.items()}
