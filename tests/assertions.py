"""The one check that an answer is an error in the API's JSON shape, for the test client and for raw calls."""
from werkzeug.http import HTTP_STATUS_CODES


def assert_error(answer, code, with_errors=None):
    """Check an error answer: the status, JSON, code, reason phrase and message, and `errors` where it belongs.

    `answer` is a Flask test response, or a (status, parsed body, headers) tuple from tests/serving.call.
    `errors` belongs to a 422, and to whatever other answer with_errors=True says carries it. Return the body.
    """
    if isinstance(answer, tuple):
        status, body, headers = answer
        mimetype = headers.get("Content-Type", "").split(";")[0]
    else:
        status, body, mimetype = answer.status_code, answer.get_json(), answer.mimetype
    assert status == code, (status, body)
    assert mimetype == "application/json"
    assert body["code"] == code and body["status"] == HTTP_STATUS_CODES[code]
    assert isinstance(body["message"], str) and body["message"]
    if code == 422 if with_errors is None else with_errors:
        assert set(body) == {"code", "status", "message", "errors"}
        assert isinstance(body["errors"], dict) and body["errors"]
    else:
        assert set(body) == {"code", "status", "message"}
    return body
