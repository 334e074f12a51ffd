"""The OpenAPI document, built at start-up from the routes, the marshmallow schemas and each view's @documented."""
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

import metrics
from canary.access.rules import PUBLIC, rule_of
from canary.openapi import fields
from canary.openapi.describe import FILTERS_BODY, operation_of
from schemas import READING_VALUE, DeviceReadingSchema, ErrorSchema

AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these for every route by itself

DESCRIPTION = """Readings from home devices, and statistics over them.

Request bodies are parsed as JSON whatever the Content-Type header says. A trailing slash on every
route of this document is optional. Any other method on a documented path answers 405 with the error shape below and
an Allow header (components/responses/MethodNotAllowed). A refused request stores nothing.

Every error has one shape: code (the HTTP status), status (its reason phrase), message (what to do),
and, on a 422, errors: for each field or batch index, the list of what is wrong with it.

When the server runs in tokens mode (setting AUTH, environment CANARY_AUTH=tokens; the production
default), every route but the public ones (health, this document and its docs page) needs a bearer
token, and answers 401 without a valid one and 403 when the token's kind may not call it. The token is
checked before the body is read, so those come before any 400, 413 or 422. In open mode
(CANARY_AUTH=open; the development and testing default) no token is needed.

Every route that touches the database answers 503 with Retry-After when the database cannot serve."""


def _error(description, headers=None):
    response = {"description": description, "content": {"application/json": {"schema": ErrorSchema}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer", "minimum": 0}}}
TOKENS_ERRORS = {
    401: "Only with CANARY_AUTH=tokens: the bearer token is missing or not valid (WWW-Authenticate: Bearer).",
    403: "Only with CANARY_AUTH=tokens: the token's kind may not call this route.",
}
DATABASE_ERROR = ("The database cannot serve: unreachable, locked beyond the busy timeout or its storage full "
                  "(Retry-After: 5), or its tables had gone and are being created again (Retry-After: 1). "
                  "Nothing was stored; send the request again after Retry-After seconds.")


def openapi_path(rule):
    """Return a Flask rule such as /devices/<device_uuid>/ as an OpenAPI path: /devices/{device_uuid}/."""
    return re.sub(r"<(?:[^<>]*:)?(\w+)>", r"{\1}", rule.rule)


def build_document(app):
    """Return the OpenAPI document of every described route the app serves."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(title="Canary readings API", version="1", openapi_version="3.0.3", plugins=[marshmallow],
                   info={"description": DESCRIPTION})
    fields.register(spec, marshmallow)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer",
        "description": "A device, ingest or read token; needed only when the server runs with CANARY_AUTH=tokens."})
    spec.components.response("MethodNotAllowed", _error("The path exists but not for this method; the Allow "
                                                        "header lists the methods it takes."))
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        view = app.view_functions[rule.endpoint]
        operation = operation_of(view)
        if operation is None:
            continue
        for method in sorted(rule.methods - AUTOMATIC_METHODS):
            spec.path(openapi_path(rule),
                      operations={method.lower(): _operation(app, marshmallow, rule, view, operation)},
                      parameters=[{"in": "path", "name": name, "required": True,
                                   **_path_parameter(marshmallow, operation, name)} for name in sorted(rule.arguments)])
    return _state_value_range(spec.to_dict(), app.config)


def _state_value_range(node, config):
    """Give every reading value's schema the app's range (VALUE_MIN, VALUE_MAX) in place of its marker."""
    if isinstance(node, dict):
        if node.pop(next(iter(READING_VALUE)), False):
            node.update(minimum=config["VALUE_MIN"], maximum=config["VALUE_MAX"])
        for child in node.values():
            _state_value_range(child, config)
    elif isinstance(node, list):
        for child in node:
            _state_value_range(child, config)
    return node


def _path_parameter(marshmallow, operation, name):
    parameter = dict(operation.parameters.get(name) or PATH_PARAMETERS[name])
    if not isinstance(parameter["schema"], dict):
        parameter["schema"] = marshmallow.converter.field2property(parameter["schema"])
    return parameter


def _operation(app, marshmallow, rule, view, operation):
    summary, _, details = (view.__doc__ or "").strip().partition("\n")
    result = {"operationId": rule.endpoint, "tags": [rule.endpoint.partition(".")[0]], "summary": summary,
              "description": operation.description or details.strip(), "responses": {}}
    for status, (description, schema, *media_types) in operation.responses.items():
        result["responses"][status] = {"description": description}
        if schema is not None:
            result["responses"][status]["content"] = {
                media_type: {"schema": schema} for media_type in media_types or ["application/json"]}
    errors = dict(operation.errors)
    if rule_of(app, rule.endpoint) != PUBLIC:
        # An open server takes requests with or without a token.
        tokens = app.config.get("AUTH", "open") == "tokens"
        result["security"] = [{"bearerAuth": []}] if tokens else [{"bearerAuth": []}, {}]
        errors.update(TOKENS_ERRORS)
    if operation.database:
        errors[503] = DATABASE_ERROR
    for status, description in sorted(errors.items()):
        result["responses"][status] = _error(description, _RETRY_AFTER if status == 503 else None)
    if operation.filters is not None:
        result["parameters"] = [
            {**parameter, "schema": fields.as_query_text(parameter["schema"])}
            for parameter in marshmallow.converter.schema2parameters(operation.filters, location="query")]
        result["description"] = " ".join(filter(None, [result["description"], FILTERS_BODY]))
    if operation.body is not None:
        result["requestBody"] = {"required": True, "description": "Parsed as JSON whatever the Content-Type says.",
                                 "content": {"application/json": {"schema": operation.body(app.config)}}}
    return result


PATH_PARAMETERS = {
    "device_uuid": {"schema": DeviceReadingSchema().fields["device_uuid"],
                    "description": "The device's id: canonical UUIDs and names such as test_device fit.",
                    "example": "36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f"},
    "metric": {"schema": {"type": "string", "enum": list(metrics.METRICS)}, "description": "The statistic."},
}


def document_of(app):
    """Return the app's OpenAPI document, built on first use (every route is registered by then) and kept."""
    document = app.extensions.get("openapi")
    if document is None:
        document = app.extensions["openapi"] = build_document(app)
    return document
