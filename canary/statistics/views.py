"""The routes of statistics over groupings: one device's readings in time buckets, and a row per device of the fleet."""
from flask import Blueprint, Response, current_app, stream_with_context

from canary.access.rules import DEVICE_READ, FLEET_READ, access
from canary.openapi.describe import READ_ERRORS, documented
from canary.statistics import buckets, fleet
from canary.statistics.series import EndsPastLastDate, series
from canary.web.errors import invalid
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
        "buckets": _buckets(device_uuid, filters, interval, zone, keep_empty=query["fill"] == "null"),
    }


def _buckets(device_uuid, filters, interval, zone, keep_empty):
    """Return the series' buckets, or refuse with a 422 an interval that cannot bucket its span."""
    try:
        return series(device_uuid, filters, interval, zone, keep_empty)
    except buckets.TooManyBuckets as error:
        raise invalid("interval", f"From {error.first} to {error.last} that interval makes {error.count:,} buckets, "
                                  f"over the limit of {buckets.MAX_BUCKETS:,}; the smallest interval "
                                  f"that fits is {error.fitting}.") from None
    except buckets.OutOfCalendar:
        raise invalid("interval", "Day and week buckets must lie within the years 1 to 9999; "
                                  "use an interval in seconds, minutes or hours.") from None
    except EndsPastLastDate:
        raise invalid("interval", f"With that interval the last bucket would end after {MAX_EPOCH_SECONDS}, the "
                                  "latest date there is; use a smaller interval.") from None


@bp.get("/devices/summary/", strict_slashes=False)
@access(FLEET_READ)
@documented(filters=SummaryQuerySchema, errors=READ_ERRORS,
            responses={200: ("A row per device with at least one matching reading, sorted by `sort` (most readings "
                             "first by default), ties by device_uuid in code point order, from `offset`, at most "
                             "`limit` rows; [] when none match.",
                             {"type": "array", "items": DeviceSummarySchema})},
            description="Statistics are defined as for the statistics routes; type is required.")
def get_summary():
    """Stream statistics of one reading type per device, sorted (most readings first by default) and paged."""
    filters = load_filters(_summary_schema)
    rows = fleet.summary(chunk_rows=current_app.config["STREAM_CHUNK_ROWS"], **filters)
    next(rows)  # run the queries now, so that a failure is still a JSON error
    return Response(stream_with_context(rows), mimetype="application/json")
