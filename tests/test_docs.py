"""The documentation, followed as written: every example of docs/api.md answers what the page shows, and the
README's tables name every setting and route there is."""
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from canary.openapi.document import document_of
from configmodule import Config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def examples(markdown):
    """Yield (curl command, the answer the page shows) for each `$ curl` line of a page's code blocks."""
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("$ curl "):
            yield line[2:], lines[index + 1]


def request_of(command):
    """Return (method, path with query, body, headers) of a curl command line."""
    words, method, body, headers, url = shlex.split(command)[1:], None, None, {}, None
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-d":
            body = words.pop(0)
        elif word == "-H":
            name, _, value = words.pop(0).partition(": ")
            headers[name] = value
        elif word != "-s":
            url = urlsplit(word)
    path = url.path + (f"?{url.query}" if url.query else "")
    return method or ("POST" if body is not None else "GET"), path, body, headers


def test_every_example_of_the_api_page_answers_as_shown(make_app):
    client = make_app().test_client()  # the testing settings: open, as `source configure_testing.sh`
    shown = list(examples((ROOT / "docs" / "api.md").read_text()))
    assert len(shown) > 20
    for command, answer in shown:
        method, path, body, headers = request_of(command)
        response = client.open(path, method=method, data=body, headers=headers)
        actual, expected = response.get_json(), json.loads(answer)
        if isinstance(actual, dict) and "request_id" in actual:  # each request's own: the page shows one
            assert actual["request_id"] == response.headers["X-Request-ID"] and "request_id" in expected, command
            actual["request_id"] = expected["request_id"]
        assert actual == expected, command


def test_readme_is_short_and_links_every_docs_page():
    assert len(README.encode()) <= 12 * 1024
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in README, page.name


@pytest.mark.parametrize("name", [name for name in dir(Config) if name.isupper()
                                  and name not in ("SQLALCHEMY_ENGINE_OPTIONS", "PROPAGATE_EXCEPTIONS")])
def test_readme_settings_table_names_every_setting(name):
    variable = "DATABASE_URL" if name == "SQLALCHEMY_DATABASE_URI" else f"CANARY_{name}"
    assert re.search(rf"^\| [^|]*`{variable}`", README, re.MULTILINE), variable


def test_readme_route_table_names_every_documented_route(app):
    for path in document_of(app)["paths"]:
        flask_path = re.sub(r"{(\w+)}", r"<\1>", path)
        assert f"`{flask_path}`" in README or f" {flask_path}`" in README, path
