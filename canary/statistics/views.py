"""The routes of statistics over groupings: one device's readings in time buckets, and a row per device of the fleet."""
import itertools

from flask import Blueprint, Response, current_app

import metrics
from canary.access.rules import DEVICE_READ, FLEET_READ, access
from canary.openapi.describe import READ_ERRORS, documented
from canary.statistics import buckets, groupings
from canary.web.errors import invalid
from canary.web.json import encode
from canary.web.requests import load_filters
from schemas import (
    MAX_EPOCH_SECONDS,
    DeviceSummarySchema,
    SeriesQuerySchema,
    SeriesSchema,
    SummaryQuerySchema,
    load_device_uuid,
)

bp = Blueprint("statistics", __name__)

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


SERIES_422 = ("A filter or the device id breaks the schema, the filter body is not a JSON object, start is after "
              "end, the span needs more than 1,000 buckets (the message names the smallest interval of the same "
              "unit that fits), day or week buckets would leave the years 1 to 9999, or the last bucket would end "
              "after 2^63-1 seconds.")
SERIES_DESCRIPTION = """Buckets are half-open, [start, end) in epoch seconds. Fixed widths (seconds, s, m, h)
start at whole multiples of the width since the Unix epoch in every zone, and tz is only echoed. Days and
weeks (d, w) follow the calendar of tz: each bucket starts at local midnight, buckets of n days are aligned
to multiples of n local days from Monday 1969-12-29, and of n weeks to multiples of 7n days, so weeks start
on Mondays.

The span runs from the bucket holding start (or the first matching reading) to the one holding end (or the
last); only readings from start to end are counted. With no matching reading and a bound missing, buckets
is []. At most 1,000 buckets, counted before fill=none leaves any out."""


@bp.get("/devices/<device_uuid>/readings/series/", strict_slashes=False)
@access(DEVICE_READ)
@documented(filters=SeriesQuerySchema, errors={**READ_ERRORS, 422: SERIES_422}, description=SERIES_DESCRIPTION,
            responses={200: ("The device, type, interval and zone, and the buckets in time order.", SeriesSchema)})
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
        span = groupings.fetch_span(filters)
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
    counts = groupings.fetch_bucket_histograms({**filters, "start": first, "end": last}, buckets.runs(edges))
    return [
        {"start": start, "end": end, **metrics.describe(counts.get(number, []))}
        for number, (start, end) in enumerate(itertools.pairwise(edges))
        if keep_empty or number in counts
    ]


@bp.get("/devices/summary/", strict_slashes=False)
@access(FLEET_READ)
@documented(filters=SummaryQuerySchema, errors=READ_ERRORS,
            responses={200: ("A row per device with at least one matching reading, most readings first, then by "
                             "device_uuid in code point order; [] when none match.",
                             {"type": "array", "items": DeviceSummarySchema})},
            description="Statistics are defined as for the statistics routes; type is required.")
def get_summary():
    """Stream statistics of one reading type per device, the devices with most readings first."""
    filters = load_filters(_summary_schema)
    devices = groupings.stream_device_histograms(current_app.config["STREAM_CHUNK_ROWS"], **filters)
    next(devices)  # run the query now, so that a failure is still a JSON error
    return Response(_summary_array(devices), mimetype="application/json")


def summary_row(device_uuid, histogram):
    """Return a device's row of the summary."""
    statistics = metrics.describe(histogram)
    return {"device_uuid": device_uuid, **{name: statistics[key] for key, name in SUMMARY_NAMES.items()}}


def _summary_array(devices, chunk_devices=500):
    """Yield the summary as a JSON array, a chunk of devices at a time, so memory stays flat."""
    separator, chunk = b"[", []
    for device in devices:
        chunk.append(summary_row(*device))
        if len(chunk) == chunk_devices:
            yield separator + encode(chunk)[1:-1]
            separator, chunk = b",", []
    if chunk:
        yield separator + encode(chunk)[1:-1]
        separator = b","
    yield b"[]\n" if separator == b"[" else b"]\n"
