"""Reading requests: JSON bodies whatever their Content-Type, filters, and batches."""
import json

from flask import abort, current_app, request
from marshmallow import ValidationError

NO_BODY = object()
JSON_VALUES_PER_READING = 8


def parse_json_body(required):
    """Return the request body parsed as JSON whatever its Content-Type, or NO_BODY if empty."""
    data = request.get_data(cache=True)
    # A chunked body has no Content-Length to check up front: Werkzeug stops reading at the limit.
    if request.content_length is None and (limit := request.max_content_length):
        if len(data) >= limit and request.input_stream.read(1):
            abort(413)
    if not data.strip():
        if required:
            abort(400, "The request body is empty; send a JSON object.")
        return NO_BODY
    # Parsed JSON takes up to 35 times its size in memory; counting the places where a value can
    # start bounds that before anything is built. Valid batches need at most 5 per reading.
    budget = JSON_VALUES_PER_READING * current_app.config["MAX_BATCH"]
    if len(data) > budget and data.count(b",") + data.count(b"[") + data.count(b"{") > budget:
        abort(413, f"The request body holds more than {budget} JSON values; "
                   f"a batch holds at most {current_app.config['MAX_BATCH']} readings.")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        abort(400, f"The request body is not valid JSON ({error}).")


def load_filters(schema):
    """Return filters from the query string and a JSON-object GET body; the query string wins."""
    body = parse_json_body(required=False)
    if body is NO_BODY:
        body = {}
    elif not isinstance(body, dict):
        raise ValidationError({"_schema": ["The request body must be a JSON object of filters."]})
    return schema.load({**body, **request.args.to_dict()})


def load_batch(schema, readings):
    """Return a validated batch of readings, refusing empty and oversized ones."""
    if not readings:
        raise ValidationError({"_schema": ["A batch must hold at least one reading."]})
    if len(readings) > current_app.config["MAX_BATCH"]:
        abort(413, f"A batch holds at most {current_app.config['MAX_BATCH']} readings; split it.")
    return schema.load(readings)
