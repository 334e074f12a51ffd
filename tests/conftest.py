"""Shared fixtures: an application per test on SQLite, and on PostgreSQL when one is configured; and markers.

The suite runs under the testing settings, as after `source configure_testing.sh`: the module-level
`app` reads ./test_database.db, which a test written the classic way fills with sqlite3. Importing
it touches no database; the fixtures below build apps on databases of their own.
"""
import os
import shutil
import uuid
from collections import Counter

os.environ.setdefault("TESTING_SETTINGS", "1")
# Settings a developer's shell may hold would change what the tests' apps are built with.
for _name in list(os.environ):
    if _name in ("DATABASE_URL", "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH", "MAX_BATCH") or (
            _name.startswith("CANARY_") and not _name.startswith(("CANARY_TEST_", "CANARY_REQUIRE_"))):
        del os.environ[_name]

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from app import create_app  # noqa: E402
from canary.access.tokens import token_digest  # noqa: E402
from canary.cli.tokens import store_tokens  # noqa: E402
from canary.statistics import rollups  # noqa: E402
from models import SensorData, Token, db  # noqa: E402


class BufferedClient(FlaskClient):
    """The test client, reading each response whole and closing it, as a server does; files are not left open."""

    def open(self, *args, buffered=True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


Flask.test_client_class = BufferedClient

POSTGRES_URL_VARIABLE = "CANARY_TEST_POSTGRES_URL"
# Kinds of test that take seconds each, or a server or browser of their own: `pytest -m "not slow"` skips them.
SLOW_KINDS = ("production", "browser", "postgresql", "fuzzing", "crash")
# Fixtures that make a test of a kind, whichever module it is in.
KIND_OF_FIXTURE = {"production": "production", "browser": "browser", "postgres_database_uri": "postgresql"}


def pytest_collection_modifyitems(items):
    """Mark tests by the fixtures they use, and every test of a slow kind as slow."""
    for item in items:
        for fixture, kind in KIND_OF_FIXTURE.items():
            if fixture in item.fixturenames and (fixture != "postgres_database_uri" or _on_postgres(item)):
                item.add_marker(kind)
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker("slow")


def _on_postgres(item):
    callspec = getattr(item, "callspec", None)
    return callspec is None or callspec.params.get("database_uri", "postgresql") == "postgresql"


def _with_search_path(url, schema):
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """A SQLite file migrated to the latest revision once, for each test to start from a copy of."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    application = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "AUTH": "open"})
    with application.app_context():
        application.extensions["canary_schema"].ensure()
        db.engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_uri(request, tmp_path):
    """A database URI of its own for this test, on each backend; a SQLite one is already migrated."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), tmp_path / "test.db")
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres_database_uri")


@pytest.fixture
def postgres_database_uri():
    """A URI whose connections use a fresh schema of the test PostgreSQL database, dropped afterwards."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        reason = (f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (e.g. postgresql+psycopg://user:pw@host/db; "
                  "docs/postgresql.md)")
        if os.environ.get("CANARY_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    schema = "t_" + uuid.uuid4().hex
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_search_path(url, schema)
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def make_app(database_uri):
    """Build applications on this test's database, open unless AUTH="tokens"; extra settings go in as test_config."""
    apps = []

    def build(**config):
        application = create_app({"SQLALCHEMY_DATABASE_URI": database_uri, "AUTH": "open", **config})
        apps.append(application)
        with application.app_context():  # as a server's first request would, so tests may write directly
            application.extensions["canary_schema"].ensure()
        return application

    yield build
    for application in apps:
        with application.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stored_count(app):
    """Count the rows in the readings table directly, bypassing the API."""

    def count():
        with app.app_context():
            statement = sa.select(sa.func.count()).select_from(SensorData.__table__)
            return db.session.execute(statement).scalar_one()

    return count


@pytest.fixture
def issue():
    """Store a token on an application's database and return its text; revoked=True revokes it."""

    def make(application, kind, device=None, revoked=False):
        with application.app_context():
            (token,) = store_tokens(kind, [device], None)
            if revoked:
                with db.engine.begin() as connection:
                    connection.execute(sa.update(Token).where(Token.digest == token_digest(token)).values(revoked_at=1))
        return token

    return make


@pytest.fixture
def device():
    return "dev-" + uuid.uuid4().hex


@pytest.fixture
def production(tmp_path):
    """Start `python serve.py` servers on a database URL; each is stopped after the test."""
    from serving import ProductionServer, require_nginx

    require_nginx()
    servers = []

    def start(database_url, **settings):
        server = ProductionServer(tmp_path / f"serve-{len(servers)}.log", database_url, **settings)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Debian Chromium per test module, on a fresh profile; skipped (or failed) without it."""
    from browsing import launch, require_browser
    from playwright.sync_api import sync_playwright

    require_browser()
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped, and print the fuzzing's case counts and the dashboard's figures."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = Counter(report.longrepr[2].removeprefix("Skipped: ") for report in skipped
                      if isinstance(report.longrepr, tuple))
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"skipped {count:,}: {reason}")
    cases, operations = {}, {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in report.user_properties:
                if name == "fuzz_cases":
                    cases[value["backend"]] = cases.get(value["backend"], 0) + value["cases"]
                    operations[value["backend"]] = operations.get(value["backend"], 0) + 1
    if cases:
        per_backend = ", ".join(f"{count:,} on {backend} ({operations[backend]} operations)"
                                for backend, count in sorted(cases.items()))
        terminalreporter.write_line(f"OpenAPI fuzzing: {sum(cases.values()):,} generated cases: {per_backend}")
    for line in _reported(terminalreporter, "dashboard"):
        terminalreporter.write_line(line)


def _reported(terminalreporter, name):
    """Yield the lines that passing tests reported under a user property name."""
    for report in terminalreporter.stats.get("passed", []):
        if getattr(report, "when", None) == "call":
            yield from (value for key, value in report.user_properties if key == name)


@pytest.fixture
def answers(monkeypatch):
    """Ask the API a question twice, from the rollups and from the raw readings, and return both answers."""

    def ask(client, path, query):
        same_id = {"X-Request-ID": "compared"}  # an error body carries the request's id
        served = client.get(path, query_string=query, headers=same_id)
        with monkeypatch.context() as raw:
            raw.setattr(rollups, "serving", lambda *args: False)
            raw.setattr(rollups, "fleet_serving", lambda *args: False)
            reference = client.get(path, query_string=query, headers=same_id)
        assert (served.status_code, served.get_json()) == (reference.status_code, reference.get_json()), (path, query)
        return served

    return ask
