"""A device's readings of one type in time buckets: the buckets' edges, and each bucket's histogram.

Buckets of a day or more come from the rollups where they serve: each bucket is covered by whole
week, day and hour buckets, plus or minus the raw readings at its edges (canary/statistics/planner.py),
so a year of Europe/London days is 365 UTC days and an hour or two of corrections for each summer
day. Narrower buckets, and devices the rollups do not serve, are counted from the raw readings in
one pass that numbers each reading's bucket.
"""
import itertools

import metrics
from canary.statistics import buckets, folding, groupings, planner, rollups, windows
from models import db
from schemas import MAX_EPOCH_SECONDS

MAX_PIECES = windows.MAX_PIECES


class EndsPastLastDate(ValueError):
    """The last bucket would end after 2^63-1 seconds, past any date the API takes."""


def series(device_uuid, filters, interval, zone, keep_empty):
    """Return the buckets from the one holding start (or the first match) to the one holding end (or the last).

    Raise buckets.TooManyBuckets, buckets.OutOfCalendar or EndsPastLastDate for a span the interval cannot bucket.
    """
    filters = {"device_uuid": device_uuid, **filters}
    with folding.snapshot(db.engine, filters) as (connection, current):
        first, last = filters["start"], filters["end"]
        if first is None or last is None:
            span = windows.fetch_span(connection, filters, current)
            if span is None:
                return []
            first, last = span[0] if first is None else first, span[1] if last is None else last
        edges = buckets.bucket_edges(interval, zone, first, last)
        if edges[-1] > MAX_EPOCH_SECONDS:
            raise EndsPastLastDate(edges[-1])
        bounded = {**filters, "start": first, "end": last}
        counts = None
        if (interval.calendar or interval.seconds >= planner.DAY) and rollups.serving(connection, device_uuid,
                                                                                    filters["type"], current):
            try:
                counts = rollup_histograms(connection, bounded, edges)
            except (planner.TooManyPieces, rollups.InconsistentRollups):
                counts = None
        if counts is None:
            counts = groupings.fetch_bucket_histograms(connection, bounded, buckets.runs(edges))
    return [
        {"start": start, "end": end, **metrics.describe(counts.get(number, []))}
        for number, (start, end) in enumerate(itertools.pairwise(edges))
        if keep_empty or number in counts
    ]


def rollup_histograms(connection, filters, edges):
    """Return {bucket number: histogram} of the buckets with readings, from the rollups and edge readings.

    Only readings from start to end count, in the first and last buckets too.
    """
    covers = []
    for start, end in itertools.pairwise(edges):
        low, high = max(start, filters["start"]), min(end, filters["end"] + 1)
        covers.append(planner.cover(low, high, limit=MAX_PIECES) if low < high else [])
    pieces = {piece for cover in covers for _, piece in cover}
    if len(pieces) > MAX_PIECES:
        raise planner.TooManyPieces(f"{len(pieces)} pieces")
    found = rollups.histograms(connection, filters["device_uuid"], filters["type"], pieces)
    counts = {}
    for number, cover in enumerate(covers):
        histogram = rollups.combine(cover, found)
        if histogram:
            counts[number] = histogram
    return counts
