"""Reading requests: JSON bodies whatever their Content-Type, single readings, filters, and batches."""
import json
from typing import Annotated, Literal

import msgspec
from flask import abort, current_app, request
from marshmallow import ValidationError

from schemas import DEVICE_UUID_PATTERN, MAX_EPOCH_SECONDS, READING_TYPES, VALUE_RANGE, now_epoch_seconds

NO_BODY = object()
JSON_VALUES_PER_READING = 8
LISTED_INVALID_READINGS = 100  # a refused batch's 422 names this many bad readings at most
NOT_JSON = "The request body is not valid JSON; send {what}."
TOO_DEEP = "The request body nests arrays and objects too deeply to be a reading or a batch; send {what}."
# Any integer of more digits is beyond every field's range; reading it as such a number keeps
# Python's limit on converting long digit strings from ever being reached.
_DIGITS_OF_ANY_FIELD = 30
_BEYOND_ANY_FIELD = 10**_DIGITS_OF_ANY_FIELD


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


def request_body():
    """Return the raw request body, refusing a chunked one over the route's size limit."""
    data = request.get_data(cache=True)
    # A chunked body has no Content-Length to check up front: Werkzeug stops reading at the limit.
    if request.content_length is None and (limit := request.max_content_length):
        if len(data) >= limit and request.input_stream.read(1):
            abort(413)
    return data


def load_valid_reading():
    """Return the body as a reading if it is one valid reading, else None for the schema to say why.

    The single-reading POST is the hot path: msgspec parses and checks a valid reading in C, about
    30 µs faster than json plus marshmallow. Whatever it refuses goes the schema's way, which gives
    the API's error messages, so msgspec only ever decides what is valid, never what the error is.
    """
    try:
        reading = _decode_valid_reading(request_body())
    except (msgspec.MsgspecError, ValueError):  # ValueError: e.g. bytes that are not UTF-8
        return None
    date_created = now_epoch_seconds() if reading.date_created is msgspec.UNSET else reading.date_created
    return {"type": reading.type, "value": reading.value, "date_created": date_created}


def load_valid_batch(decode, device_uuid=None):
    """Return the body as a batch if it is a JSON array of valid readings, else None for the schema to say why.

    The same division of labour as load_valid_reading: msgspec decodes and checks a valid batch
    in C; whatever it refuses goes through the schemas, which give the errors. `device_uuid`
    names the device of a device batch, whose readings do not name it.
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


def parse_json_body(required):
    """Return the request body parsed as JSON whatever its Content-Type, or NO_BODY if empty."""
    data = request_body()
    if not data:
        if required:
            abort(400, "The request body is empty; send a JSON object.")
        return NO_BODY
    if not data.strip():  # whitespace alone is no JSON document, and not "no body" either
        abort(400, "The request body holds only whitespace, which is not JSON; send a JSON object"
                   + ("." if required else ", or no body."))
    # Parsed JSON takes up to 35 times its size in memory; counting the places where a value can
    # start bounds that before anything is built. Valid batches need at most 5 per reading.
    budget = JSON_VALUES_PER_READING * current_app.config["MAX_BATCH"]
    if len(data) > budget and data.count(b",") + data.count(b"[") + data.count(b"{") > budget:
        abort(413, f"The request body holds more than {budget} JSON values; "
                   f"a batch holds at most {current_app.config['MAX_BATCH']} readings.")
    what = "a JSON object or array" if request.method == "POST" else "a JSON object of filters, or no body"
    try:
        return json.loads(data, parse_int=_bounded_int)
    except ValueError:  # a syntax error, or bytes that are not text
        abort(400, NOT_JSON.format(what=what))
    except RecursionError:
        abort(400, TOO_DEEP.format(what=what))


def _bounded_int(digits):
    """Return a JSON integer, or one beyond every field's range for a longer run of digits."""
    if len(digits.lstrip("-")) <= _DIGITS_OF_ANY_FIELD:
        return int(digits)
    return -_BEYOND_ANY_FIELD if digits.startswith("-") else _BEYOND_ANY_FIELD


def load_filters(schema):
    """Return filters from the query string and a JSON-object GET body; the query string wins."""
    body = parse_json_body(required=False)
    if body is NO_BODY:
        body = {}
    elif not isinstance(body, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object of filters."]})
    return schema.load({**body, **request.args.to_dict()})


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
