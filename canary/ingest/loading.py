"""Checking posted readings: msgspec decides in C what is valid, the marshmallow schemas say what is not.

Whatever msgspec refuses goes the schemas' way, which give the API's error messages, so msgspec
only ever decides what is valid, never what an error says (tests/test_loading.py checks that it
never accepts what a schema refuses).
"""
from typing import Annotated, Literal

import msgspec
from flask import abort, current_app
from marshmallow import ValidationError

from canary.web.requests import request_body
from schemas import DEVICE_UUID_PATTERN, MAX_EPOCH_SECONDS, READING_TYPES, VALUE_RANGE, now_epoch_seconds

LISTED_INVALID_READINGS = 100  # a refused batch's 422 names this many bad readings at most


class ValidReading(msgspec.Struct, forbid_unknown_fields=True):
    """A single reading exactly as schemas.ReadingSchema accepts it, for msgspec to decode and check in C."""

    type: Literal[READING_TYPES]
    value: Annotated[int, msgspec.Meta(ge=VALUE_RANGE[0], le=VALUE_RANGE[1])]
    date_created: Annotated[int, msgspec.Meta(ge=0, le=MAX_EPOCH_SECONDS)] | msgspec.UnsetType = msgspec.UNSET


class ValidDeviceReading(ValidReading, forbid_unknown_fields=True, kw_only=True):
    """A reading of a gateway batch exactly as schemas.DeviceReadingSchema accepts it."""

    device_uuid: Annotated[str, msgspec.Meta(pattern=DEVICE_UUID_PATTERN)]


_decode_valid_reading = msgspec.json.Decoder(ValidReading).decode
DEVICE_BATCH = msgspec.json.Decoder(list[ValidReading]).decode
GATEWAY_BATCH = msgspec.json.Decoder(list[ValidDeviceReading]).decode


def load_valid_reading():
    """Return the body as a reading if it is one valid reading, else None for the schema to say why.

    The single-reading POST is the hot path: msgspec parses and checks a valid reading in C, about
    30 µs faster than json plus marshmallow.
    """
    try:
        reading = _decode_valid_reading(request_body())
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
