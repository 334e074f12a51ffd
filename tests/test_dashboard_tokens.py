"""The dashboard in tokens mode: it asks for a read token, sends it with every API call, and asks again on a 401."""
import time

import pytest
from browsing import WatchedPage, api_get, open_view, post_readings
from playwright.sync_api import expect
from serving import ProductionServer, call, require_nginx

from app import create_app
from canary.access.tokens import INVALID
from canary.cli.tokens import store_tokens
from models import db

pytestmark = [pytest.mark.browser, pytest.mark.production]

DEVICES = ("porch", "loft")
UNKNOWN_TOKEN = "cnry_" + "Q" * 43


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python serve.py` in tokens mode on a SQLite file, seeded through the API with an ingest token."""
    require_nginx()
    folder = tmp_path_factory.mktemp("dashboard-tokens")
    url = f"sqlite:///{folder}/readings.db"
    server = ProductionServer(folder / "serve.log", url, CANARY_AUTH="tokens")
    server.tokens_app = create_app({"SQLALCHEMY_DATABASE_URI": url, "AUTH": "tokens"})
    try:
        server.start()
        headers = {"Authorization": f"Bearer {issue(server, 'ingest')}"}
        now = int(time.time())
        post_readings(server.port, [{"device_uuid": device, "type": "temperature", "value": value % 40,
                                     "date_created": now - value * 300} for device in DEVICES for value in range(50)]
                      + [{"device_uuid": "porch", "type": "humidity", "value": 60, "date_created": now}], headers)
        yield server
    finally:
        server.close()
        with server.tokens_app.app_context():
            db.engine.dispose()


def issue(server, kind):
    """Create a token on the server's database, as `flask tokens create` does, and return it."""
    with server.tokens_app.app_context():
        return store_tokens(kind, [None], "dashboard test")[0]


def revoke_all(server):
    """Revoke every token with `flask tokens revoke`, as an administrator would."""
    runner = server.tokens_app.test_cli_runner()
    for line in runner.invoke(args=["tokens", "list"]).stdout.splitlines():
        result = runner.invoke(args=["tokens", "revoke", line.split("\t")[0]])
        assert result.exit_code == 0, result.output


@pytest.fixture
def watched(browser, server):
    page = browser.new_page()
    yield WatchedPage(page, server.port)
    page.close()


def enter_token(page, token, reason):
    """Expect the token prompt, saying `reason`, and answer it."""
    expect(page.locator("#token-dialog")).to_be_visible()
    expect(page.locator("#token-reason")).to_contain_text(reason)
    page.fill("#token-input", token)
    page.click("#token-submit")


def test_page_asks_for_a_read_token_and_sends_it_with_every_call(watched, server):
    page = watched.page
    page.goto(f"http://127.0.0.1:{server.port}/dashboard/?range=day")
    expect(page.locator("#token-dialog")).to_be_visible()
    assert watched.api_requests() == []  # nothing is asked of the API before there is a token
    watched.screenshot("token-prompt", window=True)
    enter_token(page, UNKNOWN_TOKEN, "needs a read token")
    enter_token(page, issue(server, "read"), INVALID)  # the API's 401 message
    expect(page.locator("#state")).to_have_attribute("data-state", "ready")
    token = page.evaluate("sessionStorage.getItem('canary.readToken')")
    summary = api_get(server.port, "/devices/summary/", {"Authorization": f"Bearer {token}"}, type="temperature",
                      start=page.locator("#fleet-data").get_attribute("data-start"),
                      end=page.locator("#fleet-data").get_attribute("data-end"))
    assert [row["device_uuid"] for row in summary] == page.eval_on_selector_all(
        "#fleet-table tbody tr", "rows => rows.map(row => row.dataset.device)") and summary
    assert page.evaluate("[localStorage.length, document.cookie]") == [0, ""]  # kept for this tab only

    page.get_by_role("link", name="porch", exact=True).click()  # the next page uses the kept token
    expect(page.locator("#state")).to_have_attribute("data-state", "ready")
    expect(page.locator("#token-dialog")).to_be_hidden()
    assert page.locator("circle.point").count() > 0

    sent = [authorization for _, authorization in watched.api_requests()]
    assert sent[0] == f"Bearer {UNKNOWN_TOKEN}" and set(sent[1:]) == {f"Bearer {token}"}
    watched.assert_clean(failed_statuses={401})


def test_revoked_token_is_asked_for_again(watched, server):
    token = issue(server, "read")
    open_view(watched, "/dashboard/devices/porch/?range=day", state="loading")
    enter_token(watched.page, token, "needs a read token")
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "ready")

    revoke_all(server)
    deadline = time.monotonic() + 30  # each server process trusts what it read for TOKEN_CACHE_SECONDS
    while call(server.port, "GET", "/devices/summary/?type=temperature",
               headers={"Authorization": f"Bearer {token}"})[0] != 401:
        assert time.monotonic() < deadline, "the revoked token is still accepted"
        time.sleep(0.5)
    watched.page.select_option("#type", "humidity")
    fresh = issue(server, "read")
    enter_token(watched.page, fresh, INVALID)
    expect(watched.page.locator("#view")).to_have_attribute("data-type", "humidity")
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "ready")
    assert watched.page.evaluate("sessionStorage.getItem('canary.readToken')") == fresh
    assert watched.page.locator("circle.point").count() == 1
    watched.assert_clean(failed_statuses={401})


def test_refused_prompt_leaves_a_way_to_give_a_token(watched, server):
    open_view(watched, "/dashboard/?range=day", state="loading")
    expect(watched.page.locator("#token-dialog")).to_be_visible()
    watched.page.keyboard.press("Escape")
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "error")
    expect(watched.page.locator("#state")).to_contain_text("A read token is needed")
    watched.page.click("#token-change")
    enter_token(watched.page, "cnry_pasted with spaces", "Enter a read token")
    enter_token(watched.page, issue(server, "read"), "check what was pasted")  # refused before any request
    expect(watched.page.locator("#state")).to_have_attribute("data-state", "ready")
    assert {authorization for _, authorization in watched.api_requests()} == {
        f"Bearer {watched.page.evaluate('sessionStorage.getItem(`canary.readToken`)')}"}
    watched.assert_clean()
