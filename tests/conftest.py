"""Shared fixtures: an application per test on SQLite, and on PostgreSQL when one is configured."""
import atexit
import os
import shutil
import sys
import tempfile
import uuid

# Importing `app` builds its module-level application, so point it at a throwaway database
# before anything imports it; otherwise the import would create ./database.db in the repository.
_IMPORT_DIR = tempfile.mkdtemp(prefix="canary-import-")
atexit.register(shutil.rmtree, _IMPORT_DIR, ignore_errors=True)
os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(_IMPORT_DIR, "import.db")
for _name in ("CANARY_ROLE", "CANARY_AUTH", "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH", "MAX_BATCH"):
    os.environ.pop(_name, None)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from app import create_app  # noqa: E402
from models import Reading, db  # noqa: E402

POSTGRES_URL_VARIABLE = "CANARY_TEST_POSTGRES_URL"


def _with_search_path(url, schema):
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request, tmp_path):
    """A database URI of its own for this test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres_database_uri")


@pytest.fixture
def postgres_database_uri():
    """A URI whose connections use a fresh schema of the test PostgreSQL database, dropped afterwards."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        reason = f"PostgreSQL tests need {POSTGRES_URL_VARIABLE} (e.g. postgresql+psycopg://user:pw@host/db)"
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
            statement = sa.select(sa.func.count()).select_from(Reading.__table__)
            return db.session.execute(statement).scalar_one()

    return count


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
    from playwright.sync_api import sync_playwright

    from browsing import launch, require_browser

    require_browser()
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


def pytest_terminal_summary(terminalreporter):
    """Print how many requests the OpenAPI fuzzing generated on each backend, and the dashboard's figures."""
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
