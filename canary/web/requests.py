"""Request bodies read as JSON whatever their Content-Type, and filters from the query string or a GET body."""
import json

from flask import abort, current_app, request
from marshmallow import ValidationError

from canary.web.guards import BODY

NO_BODY = object()
JSON_VALUES_PER_READING = 8
NOT_JSON = "The request body is not valid JSON; send {what}."
TOO_DEEP = "The request body nests arrays and objects too deeply to be a reading or a batch; send {what}."
# Any integer of more digits is beyond every field's range; reading it as such a number keeps
# Python's limit on converting long digit strings from ever being reached.
_DIGITS_OF_ANY_FIELD = 30
_BEYOND_ANY_FIELD = 10**_DIGITS_OF_ANY_FIELD


def request_body():
    """Return the raw request body, refusing one over the route's size limit."""
    data = request.environ.get(BODY)
    if data is not None and ((limit := request.max_content_length) is None or len(data) <= limit):
        return data  # read whole before the app, which spares Werkzeug's stream on the hot path
    data = request.get_data(cache=True)
    # A chunked body has no Content-Length to check up front: Werkzeug stops reading at the limit.
    if request.content_length is None and (limit := request.max_content_length):
        if len(data) >= limit and request.input_stream.read(1):
            abort(413)
    return data


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
