"""What the OpenAPI document says of a route beyond its rule and view: the @documented decorator beside each view.

A view without it is left out of the document; tests/test_openapi.py compares the document with the
app's routes, so a route added undocumented fails there.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

# Refused before the body is parsed, on every route that reads one (canary/web/requests.py).
JSON_VALUES_413 = "holds more places where a JSON value can start ('[', '{' or ',') than 8 per reading of a full batch"
ROLE_404 = "on a server whose CANARY_ROLE leaves this route to servers of the other role"
WRITE_ERRORS = {400: "The body is empty or not valid JSON.",
                404: f"Only {ROLE_404}.",
                413: "The body is over its byte limit (MAX_CONTENT_LENGTH; MAX_BATCH_CONTENT_LENGTH for "
                     f"POST /readings/), or {JSON_VALUES_413}, or the batch is over MAX_BATCH readings.",
                422: "The body or the device id breaks the schema; nothing is stored. A refused batch lists its "
                     "first 100 bad readings by index and counts the rest."}
READ_ERRORS = {400: "The filter body is not valid JSON.",
               404: f"Only {ROLE_404}.",
               413: f"The filter body is over MAX_CONTENT_LENGTH, or {JSON_VALUES_413}.",
               422: "A filter or the device id breaks the schema, the filter body is not a JSON object, "
                    "or start is after end."}
FILTERS_BODY = ("The same filters may also be sent as a JSON object in the body of the GET, as existing dashboards "
                "do (browsers, and so this page, cannot send a body with GET); when both give a key, the query "
                "string wins.")


@dataclass(frozen=True)
class Operation:
    """What the document says about one view beyond what its route and docstring already tell."""

    responses: dict  # success status -> (description, body schema or None, *media types if not JSON)
    errors: dict = field(default_factory=dict)  # error status -> when the view answers it
    filters: type | None = None  # filter schema: query parameters (and, in words, a JSON body on GET)
    body: Callable | None = None  # app config -> request body schema
    database: bool = True  # touches the database, so answers 503 when it is unreachable
    description: str = ""
    parameters: dict = field(default_factory=dict)  # path parameter -> its description, where not the default's


def documented(**operation):
    """Mark a view with what the OpenAPI document says about it (see Operation)."""
    described = Operation(**operation)

    def mark(view):
        view.openapi_operation = described
        return view

    return mark


def operation_of(view):
    """Return what a view's decorator says of it, or None for a view left out of the document."""
    return getattr(view, "openapi_operation", None)


def batch_of(schema, config):
    """Return the JSON Schema of a batch of readings of a schema, up to MAX_BATCH of them."""
    return {"type": "array", "items": schema, "minItems": 1, "maxItems": config["MAX_BATCH"]}
