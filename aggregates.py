"""Aggregates for dashboards: one device's readings in time buckets, and a summary of the fleet."""
import json

from flask import Blueprint, Response, current_app

import buckets
import histograms
import metrics
from auth import DEVICE_READ, FLEET_READ, access
from errors import invalid
from parsing import load_filters
from schemas import MAX_EPOCH_SECONDS, SeriesQuerySchema, SummaryQuerySchema, load_device_uuid

bp = Blueprint("aggregates", __name__)

_series_schema = SeriesQuerySchema()
_summary_schema = SummaryQuerySchema()
SUMMARY_NAMES = {  # a device's statistic -> its key in a summary row
    "count": "number_of_readings",
    "max": "max_reading_value",
    "median": "median_reading_value",
    "mean": "mean_reading_value",
    "quartile_1": "quartile_1_value",
    "quartile_3": "quartile_3_value",
}


@bp.get("/devices/<device_uuid>/readings/series/", strict_slashes=False)
@access(DEVICE_READ)
def get_series(device_uuid):
    """Return a device's readings of one type as statistics per time bucket."""
    device_uuid = load_device_uuid(device_uuid)
    query = load_filters(_series_schema)
    interval, zone = query["interval"], query["tz"]
    filters = {key: query.get(key) for key in ("type", "start", "end")}
    return {
        "device_uuid": device_uuid,
        "type": query["type"],
        "interval": interval.label(),
        "tz": zone.key,
        "buckets": series(device_uuid, filters, interval, zone, keep_empty=query["fill"] == "null"),
    }


def series(device_uuid, filters, interval, zone, keep_empty):
    """Return the buckets from the one holding start (or the first match) to the one holding end (or the last)."""
    filters = {"device_uuid": device_uuid, **filters}
    first, last = filters["start"], filters["end"]
    if first is None or last is None:
        span = histograms.fetch_span(filters)
        if span is None:
            return []
        first, last = span[0] if first is None else first, span[1] if last is None else last
    try:
        edges = buckets.bucket_edges(interval, zone, first, last)
    except buckets.TooManyBuckets as error:
        raise invalid("interval", f"From {first} to {last} that interval makes {error.count:,} buckets, "
                                  f"over the limit of {buckets.MAX_BUCKETS:,}; the smallest interval "
                                  f"that fits is {error.fitting}.") from None
    except buckets.OutOfCalendar:
        raise invalid("interval", "Day and week buckets must lie within the years 1 to 9999; "
                                  "use an interval in seconds, minutes or hours.") from None
    if edges[-1] > MAX_EPOCH_SECONDS:
        raise invalid("interval", f"With that interval the last bucket would end after {MAX_EPOCH_SECONDS}, the "
                                  "latest date there is; use a smaller interval.")
    counts = histograms.fetch_bucket_histograms({**filters, "start": first, "end": last}, buckets.runs(edges))
    return [
        {"start": start, "end": end, **metrics.describe(counts.get(number, []))}
        for number, (start, end) in enumerate(zip(edges, edges[1:]))
        if keep_empty or number in counts
    ]


@bp.get("/devices/summary/", strict_slashes=False)
@access(FLEET_READ)
def get_summary():
    """Stream statistics of one reading type per device, the devices with most readings first."""
    filters = load_filters(_summary_schema)
    devices = histograms.stream_device_histograms(current_app.config["STREAM_CHUNK_ROWS"], **filters)
    next(devices)  # run the query now, so that a failure is still a JSON error
    return Response(_summary_array(devices), mimetype="application/json")


def summary_row(device_uuid, histogram):
    """Return a device's row of the summary."""
    statistics = metrics.describe(histogram)
    return {"device_uuid": device_uuid, **{name: statistics[key] for key, name in SUMMARY_NAMES.items()}}


def _summary_array(devices, chunk_devices=500):
    """Yield the summary as a JSON array, a chunk of devices at a time, so memory stays flat."""
    separator, chunk = "[", []
    for device in devices:
        chunk.append(summary_row(*device))
        if len(chunk) == chunk_devices:
            yield separator + json.dumps(chunk, separators=(",", ":"), sort_keys=True)[1:-1]
            separator, chunk = ",", []
    if chunk:
        yield separator + json.dumps(chunk, separators=(",", ":"), sort_keys=True)[1:-1]
        separator = ","
    yield "[]\n" if separator == "[" else "]\n"
