"""Marshmallow schemas: what a reading, a batch and a set of query filters must look like."""
import functools
import re
import time
import zoneinfo
from importlib.resources import files

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from canary.statistics.buckets import Interval

READING_TYPES = ("temperature", "humidity")
# 1-64 of these characters, but not "." or "..", which clients normalise away as path segments.
DEVICE_UUID_PATTERN = (r"\A(?:[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}|\.[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,62}"
                       r"|\.\.[A-Za-z0-9_.:-]{1,62})\Z")
MAX_EPOCH_SECONDS = 2**63 - 1  # the largest value a 64-bit INTEGER/BIGINT column holds
# A reading's value, inclusive, unless the VALUE_MIN and VALUE_MAX settings say otherwise.
DEFAULT_VALUE_RANGE = (0, 100)
# Marks the fields that hold a reading's value, so the OpenAPI document states the app's own range.
READING_VALUE = {"x-reading-value": True}

_device_uuid = validate.Regexp(
    DEVICE_UUID_PATTERN,
    error="Must be 1-64 characters of letters, digits, '-', '_', '.' or ':', and not '.' or '..'.",
)
_epoch_seconds = validate.Range(0, MAX_EPOCH_SECONDS, error="Must be epoch seconds from {min} to {max}.")


_integer_error = {"invalid": "Must be a JSON integer."}


def now_epoch_seconds():
    """Return the current time in whole epoch seconds, the date of a reading posted without one."""
    return int(time.time())


class QueryInteger(fields.Integer):
    """An integer from a JSON body or a query string: a JSON integer or a string of digits."""

    _digits = re.compile(r"\A-?[0-9]{1,30}\Z")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and self._digits.match(value):
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)

    def __init__(self, **kwargs):
        super().__init__(strict=True, error_messages={"invalid": "Must be an integer."}, **kwargs)


class IntervalField(fields.Field):
    """A bucket width: a positive integer of seconds, or a duration such as 90s, 5m, 1h, 1d or 1w."""

    DIGITS = 20
    _duration = re.compile(rf"\A([0-9]{{1,{DIGITS}}})([smhdw]?)\Z")
    default_error_messages = {
        "invalid": "Must be a positive integer of seconds or a duration such as 90s, 5m, 1h, 1d or 1w.",
        "too_large": f"Must be at most {MAX_EPOCH_SECONDS} seconds.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            interval = Interval(value)
        elif isinstance(value, str) and (match := self._duration.match(value)):
            interval = Interval(int(match[1]), match[2])
        else:
            raise self.make_error("invalid")
        if interval.amount < 1:
            raise self.make_error("invalid")
        if interval.seconds > MAX_EPOCH_SECONDS:
            raise self.make_error("too_large")
        return interval


@functools.cache
def zone_names():
    """Return the IANA time zone names: those of the pinned tzdata release, not the server's own aliases."""
    return frozenset(files("tzdata").joinpath("zones").read_text().split())


class TimeZoneField(fields.String):
    """An IANA time zone name, such as UTC or Europe/London, loaded as a ZoneInfo."""

    default_error_messages = {"unknown": "Must be an IANA time zone name such as UTC or Europe/London."}

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if name not in zone_names():
            raise self.make_error("unknown")
        return zoneinfo.ZoneInfo(name)


def load_device_uuid(value):
    """Return a device id from the URL path, or raise a ValidationError keyed by device_uuid."""
    # The validator alone, not a one-field schema: this runs on every request of the hot path.
    try:
        return _device_uuid(value)
    except ValidationError as error:
        raise ValidationError({"device_uuid": error.messages}) from None


class ReadingSchema(Schema):
    """A reading posted for the device named in the URL."""

    type = fields.String(required=True, validate=validate.OneOf(READING_TYPES))
    value = fields.Integer(strict=True, required=True, validate=validate.Range(*DEFAULT_VALUE_RANGE),
                           error_messages=_integer_error, metadata=READING_VALUE)
    date_created = fields.Integer(
        strict=True, load_default=now_epoch_seconds, validate=_epoch_seconds, error_messages=_integer_error
    )


class DeviceReadingSchema(ReadingSchema):
    """A reading that names its own device, as gateways post them."""

    device_uuid = fields.String(required=True, validate=_device_uuid)


@functools.cache
def reading_schemas(value_min, value_max):
    """Return a ReadingSchema and a DeviceReadingSchema whose values must lie from value_min to value_max."""

    def value():
        return fields.Integer(strict=True, required=True, validate=validate.Range(value_min, value_max),
                              error_messages=_integer_error, metadata=READING_VALUE)

    return (type("ReadingSchema", (ReadingSchema,), {"value": value()})(),
            type("DeviceReadingSchema", (DeviceReadingSchema,), {"value": value()})())


class ReadingFilterSchema(Schema):
    """Filters on a device's readings; bounds are inclusive epoch seconds."""

    type = fields.String(validate=validate.OneOf(READING_TYPES))
    start = QueryInteger(validate=_epoch_seconds, metadata={"description": "Earliest date_created; not after end."})
    end = QueryInteger(validate=_epoch_seconds, metadata={"description": "Latest date_created."})

    @validates_schema
    def _start_not_after_end(self, data, **kwargs):
        if "start" in data and "end" in data and data["start"] > data["end"]:
            raise ValidationError("Must not be after end.", "start")


class ListingQuerySchema(ReadingFilterSchema):
    """Filters plus paging for the readings listing."""

    limit = QueryInteger(validate=validate.Range(1, 2**63 - 1, error="Must be a positive integer."),
                         metadata={"description": "The most readings to return."})
    order = fields.String(load_default="asc", validate=validate.OneOf(("asc", "desc")),
                          metadata={"description": "asc: oldest first; desc: latest first."})


class MetricQuerySchema(ReadingFilterSchema):
    """Filters for a statistic, which is always over one reading type."""

    type = fields.String(required=True, validate=validate.OneOf(READING_TYPES))


class SeriesQuerySchema(MetricQuerySchema):
    """Filters and bucketing for a device's series: interval, time zone and how to fill gaps."""

    interval = IntervalField(required=True, metadata={
        "description": "The bucket width: seconds, or an amount of s, m, h, d (local days) or w (local weeks) "
                       "up to 2^63-1 seconds, such as 90s, 5m, 1h, 1d or 2w."})
    tz = TimeZoneField(load_default=lambda: zoneinfo.ZoneInfo("UTC"), metadata={
        "default": "UTC", "description": "The IANA time zone whose calendar day and week buckets follow."})
    fill = fields.String(load_default="null", allow_none=True, validate=validate.OneOf(("null", "none")),
                         metadata={"description": "null (or a JSON null): list empty buckets with count 0 and "
                                                  "null statistics; none: leave them out."})

    @post_load
    def _json_null_fills_too(self, data, **kwargs):
        if data["fill"] is None:
            data["fill"] = "null"
        return data


SUMMARY_SORTS = ("number_of_readings", "device_uuid", "max_reading_value", "median_reading_value",
                 "mean_reading_value", "quartile_1_value", "quartile_3_value")


class SummaryQuerySchema(MetricQuerySchema):
    """Filters for the fleet summary: one type, an optional time range, an order and a page of devices."""

    limit = QueryInteger(validate=validate.Range(1, 2**63 - 1, error="Must be a positive integer."),
                         metadata={"description": "The most devices to return."})
    offset = QueryInteger(load_default=0, validate=validate.Range(0, 2**63 - 1, error="Must be 0 or more."),
                          metadata={"description": "How many devices of the order to skip first."})
    sort = fields.String(load_default=SUMMARY_SORTS[0], validate=validate.OneOf(SUMMARY_SORTS),
                         metadata={"description": "The row key to sort by; ties go by device_uuid ascending."})
    order = fields.String(validate=validate.OneOf(("asc", "desc")), metadata={
        "description": "asc or desc; desc by default, but asc for device_uuid."})


# What the API answers: these describe responses in the OpenAPI document (canary/openapi/).


class StoredReadingSchema(Schema):
    """A stored reading, as the API returns it."""

    device_uuid = fields.String(required=True, validate=_device_uuid)
    type = fields.String(required=True, validate=validate.OneOf(READING_TYPES))
    value = fields.Integer(required=True, metadata=READING_VALUE)
    date_created = fields.Integer(required=True, validate=_epoch_seconds)


class StatisticReadingSchema(StoredReadingSchema):
    """The reading min, max and median return; a median of an even count may end in .5."""

    value = fields.Float(required=True, metadata=READING_VALUE)


class StatisticValueSchema(Schema):
    """The mean (a whole number or a float) or the mode (a whole number)."""

    value = fields.Float(required=True, metadata=READING_VALUE)


class QuartilesSchema(Schema):
    """The first and third quartiles by Tukey's hinges."""

    quartile_1 = fields.Float(required=True, metadata=READING_VALUE)
    quartile_3 = fields.Float(required=True, metadata=READING_VALUE)


def _statistic(**kwargs):
    return fields.Float(required=True, metadata={**READING_VALUE, **kwargs.pop("metadata", {})}, **kwargs)


class BucketSchema(Schema):
    """One bucket of a series, [start, end) in epoch seconds: its count and statistics, null when empty."""

    start = fields.Integer(required=True, metadata={"description": "The bucket's first second (inclusive)."})
    end = fields.Integer(required=True, metadata={"description": "The next bucket's start (exclusive)."})
    count = fields.Integer(required=True, validate=validate.Range(0),
                           metadata={"description": "How many readings it holds; 0 for an empty bucket."})
    min = _statistic(allow_none=True)
    max = _statistic(allow_none=True)
    mean = _statistic(allow_none=True)
    median = _statistic(allow_none=True)
    mode = _statistic(allow_none=True)
    quartile_1 = _statistic(allow_none=True)
    quartile_3 = _statistic(allow_none=True)


class SeriesSchema(Schema):
    """A device's readings of one type in time buckets, in time order."""

    device_uuid = fields.String(required=True, validate=_device_uuid)
    type = fields.String(required=True, validate=validate.OneOf(READING_TYPES))
    interval = fields.Raw(required=True, metadata={
        "description": "Seconds for a fixed width; the duration, such as 1d or 2w, for days and weeks.",
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_EPOCH_SECONDS},
                  {"type": "string", "pattern": "^[1-9][0-9]*[dw]$"}]})
    tz = TimeZoneField(required=True)
    buckets = fields.List(fields.Nested(BucketSchema), required=True)


class DeviceSummarySchema(Schema):
    """One device's row of the fleet summary."""

    device_uuid = fields.String(required=True, validate=_device_uuid)
    number_of_readings = fields.Integer(required=True, validate=validate.Range(1))
    max_reading_value = _statistic()
    median_reading_value = _statistic()
    mean_reading_value = _statistic()
    quartile_1_value = _statistic()
    quartile_3_value = _statistic()


class CountSchema(Schema):
    """How many readings a batch stored."""

    count = fields.Integer(required=True, validate=validate.Range(1))


class HealthSchema(Schema):
    """The health check's answer when the database answered."""

    status = fields.String(required=True, validate=validate.OneOf(("ok",)))


class ErrorSchema(Schema):
    """The one JSON error shape."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "The status code's reason phrase."})
    message = fields.String(required=True, metadata={"description": "One sentence saying what to do."})
    request_id = fields.String(required=True, metadata={
        "description": "The request's id, as in its X-Request-ID header and its request log line."})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "422 only: what is wrong with each field, or with each batch item by its index."},
    )
