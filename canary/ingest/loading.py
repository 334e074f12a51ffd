"""Checking posted readings: msgspec decides in C what is valid, the marshmallow schemas say what is not.

Whatever msgspec refuses goes the schemas' way, which give the API's error messages, so msgspec
only ever decides what is valid, never what an error says (tests/test_loading.py checks that it
never accepts what a schema refuses).
"""
import functools
from typing import Annotated, Literal

import msgspec
from flask import abort, current_app
from marshmallow import ValidationError

from canary.web.requests import parse_json_body, request_body
from schemas import (
    DEFAULT_VALUE_RANGE,
    DEVICE_UUID_PATTERN,
    MAX_EPOCH_SECONDS,
    READING_TYPES,
    now_epoch_seconds,
    reading_schemas,
)

LISTED_INVALID_READINGS = 100  # a refused batch's 422 names this many bad readings at most


class ReadingCheckers:
    """How readings whose values lie from value_min to value_max are checked: by msgspec, then marshmallow."""

    def __init__(self, value_min, value_max):
        self.value_min, self.value_max = value_min, value_max
        in_range = Annotated[int, msgspec.Meta(ge=value_min, le=value_max)]

        class ValidReading(msgspec.Struct, forbid_unknown_fields=True):
            """A single reading exactly as the ReadingSchema accepts it, for msgspec to decode and check in C."""

            type: Literal[READING_TYPES]
            value: in_range
            date_created: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_SECONDS)] | msgspec.UnsetType = msgspec.UNSET

        class ValidDeviceReading(ValidReading, forbid_unknown_fields=True, kw_only=True):
            """A reading of a gateway batch exactly as the DeviceReadingSchema accepts it."""

            device_uuid: Annotated[str, msgspec.Meta(pattern=DEVICE_UUID_PATTERN)]

        self.valid_reading, self.valid_device_reading = ValidReading, ValidDeviceReading
        self.decode_reading = msgspec.json.Decoder(ValidReading).decode
        self.decode_device_batch = msgspec.json.Decoder(list[ValidReading]).decode
        self.decode_gateway_batch = msgspec.json.Decoder(list[ValidDeviceReading]).decode
        self.reading_schema, self.device_reading_schema = reading_schemas(value_min, value_max)


@functools.cache
def checkers(value_min=DEFAULT_VALUE_RANGE[0], value_max=DEFAULT_VALUE_RANGE[1]):
    """Return the ReadingCheckers of a value range, made once."""
    return ReadingCheckers(value_min, value_max)


def app_checkers():
    """Return the ReadingCheckers of the app's VALUE_MIN and VALUE_MAX settings."""
    config = current_app.config
    return checkers(config["VALUE_MIN"], config["VALUE_MAX"])


def load_valid_reading():
    """Return the body as a reading if it is one valid reading, else None for the schema to say why.

    The single-reading POST is the hot path: msgspec parses and checks a valid reading in C, about
    30 µs faster than json plus marshmallow.
    """
    try:
        reading = app_checkers().decode_reading(request_body())
    except (msgspec.MsgspecError, ValueError):  # ValueError: e.g. bytes that are not UTF-8
        return None
    date_created = now_epoch_seconds() if reading.date_created is msgspec.UNSET else reading.date_created
    return {"type": reading.type, "value": reading.value, "date_created": date_created}


def load_valid_batch(decode, device_uuid=None):
    """Return the body as a batch if it is a JSON array of valid readings, else None for the schema to say why.

    `device_uuid` names the device of a device batch, whose readings do not name it.
    """
    try:
        readings = decode(request_body())
    except (msgspec.MsgspecError, ValueError):
        return None
    if not readings or len(readings) > current_app.config["MAX_BATCH"]:
        return None  # load_batch says what is wrong
    now = now_epoch_seconds()
    return [{"device_uuid": device_uuid or reading.device_uuid, "type": reading.type, "value": reading.value,
             "date_created": now if reading.date_created is msgspec.UNSET else reading.date_created}
            for reading in readings]


def load_device_post(device_uuid):
    """Return (reading, None) for one reading posted for a device, or (None, readings) for a batch."""
    reading = load_valid_reading()
    if reading is not None:
        return reading, None
    checkers = app_checkers()
    readings = load_valid_batch(checkers.decode_device_batch, device_uuid)
    if readings is not None:
        return None, readings
    body = parse_json_body(required=True)
    if not isinstance(body, list):
        return checkers.reading_schema.load(body), None
    return None, [{**reading, "device_uuid": device_uuid}
                  for reading in load_batch(checkers.reading_schema, checkers.valid_reading, body)]


def load_gateway_post():
    """Return the readings of a gateway batch, each naming its device."""
    checkers = app_checkers()
    readings = load_valid_batch(checkers.decode_gateway_batch)
    if readings is not None:
        return readings
    body = parse_json_body(required=True)
    if not isinstance(body, list):
        raise ValidationError({"_schema": ["The request body must be a JSON array of readings."]})
    return load_batch(checkers.device_reading_schema, checkers.valid_device_reading, body)


def load_batch(schema, valid_type, readings):
    """Return a validated batch of readings, refusing empty, oversized and invalid ones.

    A refused batch's 422 lists the errors of its first LISTED_INVALID_READINGS bad readings by
    index; the rest are only counted, by msgspec against `valid_type`, so a batch of 10,000 bad
    readings costs no more error objects than one of 100.
    """
    if not readings:
        raise ValidationError({"_schema": ["A batch must hold at least one reading."]})
    if len(readings) > current_app.config["MAX_BATCH"]:
        abort(413, f"A batch holds at most {current_app.config['MAX_BATCH']} readings; split it.")
    loaded, errors, invalid = [], {}, 0
    for index, reading in enumerate(readings):
        if invalid >= LISTED_INVALID_READINGS:
            invalid += not is_valid(valid_type, reading)
            continue
        try:
            loaded.append(schema.load(reading))
        except ValidationError as error:
            invalid += 1
            errors[index] = error.messages
    if not invalid:
        return loaded
    listed = f"the first {len(errors)} by index" if invalid > len(errors) else "each by index"
    raise ValidationError(errors, summary=f"{invalid:,} of the {len(readings):,} readings are invalid, so none was "
                                          f"stored; 'errors' lists {listed}.")


def is_valid(valid_type, reading):
    """Tell whether msgspec takes a parsed reading as `valid_type`, as the schema would."""
    try:
        msgspec.convert(reading, valid_type)
    except msgspec.ValidationError:
        return False
    return True
