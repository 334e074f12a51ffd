"""Configuration classes and the environment variables that select and override them."""
import os

from sqlalchemy.engine import make_url


class Config:
    """Production settings: the default when no settings variable is set."""

    DATABASE_FILE = "database.db"
    SQLALCHEMY_DATABASE_URI = None  # derived from DATABASE_FILE unless DATABASE_URL is set
    # A pooled connection that a database restart left behind is replaced before it fails a request.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    # Errors must reach the JSON error handler even under TESTING, whose default re-raises them.
    PROPAGATE_EXCEPTIONS = False
    MAX_CONTENT_LENGTH = 1024 * 1024
    # Gateway batches name a device in every reading, so a full batch needs more room.
    MAX_BATCH_CONTENT_LENGTH = 8 * 1024 * 1024
    MAX_BATCH = 10_000
    CANARY_ROLE = "all"
    # "tokens": every route but the public ones needs a bearer token; "open": none does.
    AUTH = "tokens"
    # How long a process trusts what it last read about a token, and so bounds how late a
    # revocation takes effect.
    TOKEN_CACHE_SECONDS = 2.0
    SQLITE_BUSY_TIMEOUT_MS = 30_000
    STREAM_CHUNK_ROWS = 1000


class DevelopmentConfig(Config):
    """Settings for local development, selected by DEVELOPMENT_SETTINGS."""

    DEBUG = True
    DATABASE_FILE = "development_database.db"
    AUTH = "open"


class TestingConfig(Config):
    """Settings for tests, selected by TESTING_SETTINGS."""

    TESTING = True
    DATABASE_FILE = "test_database.db"
    AUTH = "open"


def select_config(environ=os.environ):
    """Return the config class the environment asks for."""
    if environ.get("TESTING_SETTINGS"):
        return TestingConfig
    if environ.get("DEVELOPMENT_SETTINGS"):
        return DevelopmentConfig
    return Config


def environment_overrides(environ=os.environ):
    """Return the settings that environment variables override in any configuration."""
    overrides = {}
    if environ.get("DATABASE_URL"):
        overrides["SQLALCHEMY_DATABASE_URI"] = environ["DATABASE_URL"]
    for name in ("MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH", "MAX_BATCH"):
        if environ.get(name):
            overrides[name] = int(environ[name])
    if environ.get("CANARY_ROLE"):
        overrides["CANARY_ROLE"] = environ["CANARY_ROLE"]
    if environ.get("CANARY_AUTH"):
        overrides["AUTH"] = environ["CANARY_AUTH"]
    return overrides


def database_uri(config):
    """Return the database URI, with a relative SQLite path resolved against the working directory.

    Flask-SQLAlchemy would otherwise resolve it against the instance folder.
    """
    url = make_url(config.get("SQLALCHEMY_DATABASE_URI") or "sqlite:///" + config["DATABASE_FILE"])
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    if url.get_backend_name() == "sqlite" and not in_memory and not url.database.startswith("file:"):
        url = url.set(database=os.path.abspath(url.database))
    return url.render_as_string(hide_password=False)
