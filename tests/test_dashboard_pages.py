"""The dashboard's pages as HTTP answers: public, confined to this origin, and telling nothing about a device."""
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from canary.dashboard import views as dashboard
from canary.ingest.store import insert_readings

STATIC = Path(dashboard.__file__).resolve().parent / "static"
PAGES = ["/dashboard/", "/dashboard", "/dashboard/devices/36e7e2a4-0f0f-4c4c-9a9a-1b2b3c4d5e6f/",
         "/dashboard/devices/kitchen:2"]
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name in the chart's code, never fetched


class Links(HTMLParser):
    """Collect the URLs a page loads (src and href attributes) and its body's data attributes."""

    def __init__(self):
        super().__init__()
        self.urls, self.body = [], {}

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "body":
            self.body = dict(attrs)


def parse(response):
    links = Links()
    links.feed(response.get_data(as_text=True))
    return links


@pytest.mark.parametrize("mode", ["open", "tokens"])
@pytest.mark.parametrize("path", PAGES)
def test_page_is_public_html_that_knows_the_mode(make_app, mode, path):
    response = make_app(AUTH=mode).test_client().get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert parse(response).body["data-auth"] == mode
    assert ('id="token-dialog"' in response.get_data(as_text=True)) == (mode == "tokens")
    policy = dict(directive.split(" ", 1) for directive in response.headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'none'"
    assert {policy[name] for name in ("script-src", "style-src", "img-src", "connect-src")} == {"'self'"}


def imported_modules(script):
    return re.findall(r'^import [^;]* from "([^"]+)";', script.read_text(), flags=re.MULTILINE)


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_only_files_this_app_serves(client, path):
    pending = [urljoin(path, url) for url in parse(client.get(path)).urls]
    seen = set()
    while pending:
        url = pending.pop()
        assert not urlsplit(url).scheme and not urlsplit(url).netloc, f"{url} is on another host"
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        if url.startswith("/dashboard/static/"):
            assert response.mimetype == MEDIA_TYPES[Path(url).suffix]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            if url.endswith(".js"):
                pending += [urljoin(url, module) for module in imported_modules(STATIC / Path(url).name)]
    assert {url.rsplit("/", 1)[1] for url in seen if url.startswith("/dashboard/static/")} >= {
        "dashboard.css", "favicon.svg", "common.js"}


def test_static_files_name_no_other_host():
    for path in STATIC.iterdir():
        text = path.read_text().replace(SVG_NAMESPACE, "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE), path.name
        assert "url(" not in text, path.name


@pytest.mark.parametrize("device", ["a" * 65, "bad id", "caf\u00e9", "semi;colon"])
def test_device_page_refuses_a_bad_device_id(client, device):
    response = client.get(f"/dashboard/devices/{device}/")
    assert response.status_code == 422 and response.mimetype == "application/json"
    assert set(response.get_json()["errors"]) == {"device_uuid"}


def test_device_page_tells_nothing_about_the_device(make_app):
    application = make_app(AUTH="tokens")
    with application.app_context():
        insert_readings([{"device_uuid": "known", "type": "temperature", "value": 20, "date_created": 1}],
                        "gateway_batch")
    client = application.test_client()
    known = client.get("/dashboard/devices/known/").get_data(as_text=True)
    unknown = client.get("/dashboard/devices/nobody/").get_data(as_text=True)
    assert known.replace("known", "nobody") == unknown
