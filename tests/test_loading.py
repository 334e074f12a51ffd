"""The single-reading fast path: msgspec accepts a reading only where ReadingSchema does, with the same values."""
import json
import time

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from canary.ingest.loading import checkers, is_valid, load_valid_reading
from schemas import MAX_EPOCH_SECONDS, READING_TYPES

# The default range, and tenths of a degree from -40.0 to 60.0 (the VALUE_MIN and VALUE_MAX settings)
RANGES = pytest.mark.parametrize("checked", [checkers(), checkers(-400, 600)], ids=["0..100", "-400..600"])

KEYS = st.sampled_from(["type", "value", "date_created", "Type", "device_uuid", "extra"])
VALUES = st.one_of(
    st.sampled_from(READING_TYPES),
    st.integers(-3, 103),
    st.integers(-403, -397),
    st.integers(597, 603),
    st.integers(MAX_EPOCH_SECONDS - 2, MAX_EPOCH_SECONDS + 2),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.lists(st.integers(0, 100), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


def object_text(pairs):
    """Return a JSON object's text with these key-value pairs in order, repeated keys included."""
    return "{" + ",".join(f"{json.dumps(key)}:{json.dumps(value)}" for key, value in pairs) + "}"


def schema_result(checked, body):
    """Return what json plus the ReadingSchema make of a body: the reading, or None if they refuse it."""
    try:
        return checked.reading_schema.load(json.loads(body))
    except (ValueError, ValidationError):
        return None


def fast_result(checked, body):
    """Return what msgspec makes of a body with the ValidReading type: the struct, or None if it refuses it."""
    try:
        return checked.decode_reading(body)
    except (msgspec.MsgspecError, ValueError):
        return None


def assert_fast_path_agrees(checked, body):
    fast = fast_result(checked, body)
    if fast is None:
        return  # the schema decides, and explains
    schema = schema_result(checked, body)
    assert schema is not None, f"msgspec accepted what the schema refuses: {body!r}"
    assert (fast.type, fast.value) == (schema["type"], schema["value"])
    if fast.date_created is msgspec.UNSET:
        assert abs(schema["date_created"] - time.time()) < 5
    else:
        assert fast.date_created == schema["date_created"]


@settings(max_examples=600)  # for each range
@given(st.lists(st.tuples(KEYS, VALUES), max_size=5))
@example([("type", "humidity"), ("value", 5)])
@example([("type", "humidity"), ("value", 500), ("value", 5)])
@example([("type", "humidity"), ("value", 5), ("value", True)])
@example([("type", "humidity"), ("value", 5), ("date_created", None)])
@RANGES
def test_fast_path_accepts_only_what_the_schema_accepts(checked, pairs):
    assert_fast_path_agrees(checked, object_text(pairs).encode())


@RANGES
@given(st.sampled_from(READING_TYPES), st.data(), st.integers(0, MAX_EPOCH_SECONDS))
def test_fast_path_accepts_every_valid_reading(checked, reading_type, data, date):
    value = data.draw(st.integers(checked.value_min, checked.value_max))
    body = json.dumps({"type": reading_type, "value": value, "date_created": date}).encode()
    assert fast_result(checked, body) == checked.valid_reading(reading_type, value, date)


TEXTS = {
    "whitespace around": b' \n{"type": "humidity", "value": 5}\t\r\n',
    "escaped key and value": b'{"typ\\u0065": "hum\\u0069dity", "value": 5}',
    "repeated key, last valid": b'{"type": "humidity", "value": 500, "value": 5}',
    "repeated key, last invalid": b'{"type": "humidity", "value": 5, "value": 500}',
    "utf-8 byte order mark": b'\xef\xbb\xbf{"type": "humidity", "value": 5}',
    "utf-16": '{"type": "humidity", "value": 5}'.encode("utf-16"),
    "exponent": b'{"type": "humidity", "value": 5e0}',
    "minus zero": b'{"type": "humidity", "value": -0}',
    "trailing comma": b'{"type": "humidity", "value": 5,}',
    "two objects": b'{"type": "humidity", "value": 5}{}',
    "NaN": b'{"type": "humidity", "value": NaN}',
    "array": b'[{"type": "humidity", "value": 5}]',
    "empty": b"",
    "invalid utf-8 in a string": b'{"type": "humid\xffity", "value": 5}',
    "deep nesting": b'{"type": "humidity", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a thousand-digit value": b'{"type": "humidity", "value": ' + b"9" * 1000 + b"}",
}


@RANGES
@pytest.mark.parametrize("body", TEXTS.values(), ids=TEXTS)
def test_fast_path_agrees_on_edge_texts(checked, body):
    assert_fast_path_agrees(checked, body)


@pytest.mark.parametrize("body, expected", [
    (b'{"type": "temperature", "value": 7, "date_created": 12}',
     {"type": "temperature", "value": 7, "date_created": 12}),
    (b'{"value": 0, "type": "humidity"}', {"type": "humidity", "value": 0}),
    (b'{"type": "humidity", "value": 101}', None),
    (b'[]', None),
    (b'', None),
    (b'{"type": "humid\xffity", "value": 5}', None),
])
def test_load_valid_reading_returns_the_reading_or_none(app, body, expected):
    with app.test_request_context("/", method="POST", data=body):
        reading = load_valid_reading()
    if expected is None or reading is None:
        assert reading == expected
        return
    expected = {"date_created": int(time.time()), **expected}
    assert abs(reading.pop("date_created") - expected.pop("date_created")) <= 2
    assert reading == expected


DEVICE_IDS = st.one_of(st.sampled_from([".", "..", "...", "a", ".a", "x" * 64, "x" * 65, "a b", "dev-1", ""]),
                       st.text(max_size=6))


@settings(max_examples=300)  # for each range
@given(st.lists(st.lists(st.tuples(KEYS, VALUES | DEVICE_IDS), max_size=5), min_size=1, max_size=3))
@example([[("type", "humidity"), ("value", 5), ("device_uuid", ".")]])
@example([[("type", "humidity"), ("value", 5), ("device_uuid", "...")]])
@RANGES
def test_batch_fast_paths_accept_only_what_the_schemas_accept(checked, items):
    body = ("[" + ",".join(object_text(pairs) for pairs in items) + "]").encode()
    for decode, schema, valid_type in (
            (checked.decode_device_batch, checked.reading_schema, checked.valid_reading),
            (checked.decode_gateway_batch, checked.device_reading_schema, checked.valid_device_reading)):
        parsed = json.loads(body)
        schema_verdicts = []
        for item in parsed:
            try:
                schema_verdicts.append(schema.load(item))
            except ValidationError:
                schema_verdicts.append(None)
        # The count of a refused batch's bad readings agrees with the schema on every item.
        assert [is_valid(valid_type, item) for item in parsed] == [v is not None for v in schema_verdicts]
        try:
            fast = decode(body)
        except (msgspec.MsgspecError, ValueError):
            continue
        assert None not in schema_verdicts, f"msgspec accepted a batch the schema refuses: {body!r}"
        for struct, loaded in zip(fast, schema_verdicts):
            assert (struct.type, struct.value) == (loaded["type"], loaded["value"])
            if hasattr(struct, "device_uuid"):
                assert struct.device_uuid == loaded["device_uuid"]
