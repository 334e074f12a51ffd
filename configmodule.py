"""Configuration classes, and the environment variables that select and override them.

Every setting of Config can be set from the environment as CANARY_<NAME> (Flask's
from_prefixed_env, which reads values as JSON where they parse as JSON); DATABASE_URL,
MAX_CONTENT_LENGTH, MAX_BATCH_CONTENT_LENGTH and MAX_BATCH keep their unprefixed names too.
"""
import os

from sqlalchemy.engine import make_url

ENV_PREFIX = "CANARY"
# Unprefixed names that set a setting, kept from earlier releases; the prefixed name wins.
ENV_ALIASES = {"DATABASE_URL": "SQLALCHEMY_DATABASE_URI", "MAX_CONTENT_LENGTH": "MAX_CONTENT_LENGTH",
               "MAX_BATCH_CONTENT_LENGTH": "MAX_BATCH_CONTENT_LENGTH", "MAX_BATCH": "MAX_BATCH"}

VALUE_LIMITS = (-2**31, 2**31 - 1)  # the readings table's INTEGER value column on PostgreSQL


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
    # "all" serves every route; "ingest" only the write routes, "query" only the read routes.
    ROLE = "all"
    # "tokens": every route but the public ones needs a bearer token; "open": none does.
    AUTH = "tokens"
    # How long a process trusts what it last read about a token, and so bounds how late a
    # revocation takes effect.
    TOKEN_CACHE_SECONDS = 2.0
    SQLITE_BUSY_TIMEOUT_MS = 30_000
    STREAM_CHUNK_ROWS = 1000
    # A reading's value, inclusive: integers, in whatever unit the devices use (tenths of a degree from
    # -400 to 600, say). The rollups hold any integers, so a wider range needs nothing else.
    VALUE_MIN = 0
    VALUE_MAX = 100
    # Build the rollups of readings stored before them in a background thread of each process.
    ROLLUP_BUILDER = True
    # Count requests, readings and refusals for GET /metrics (docs/operations.md).
    METRICS = True
    # One JSON line per request: "-" for stderr, a file's path, or "" for none.
    REQUEST_LOG = "-"
    # Requests a second, and bursts, that nginx lets through (python serve.py only; 0: no limit): per
    # device on its write routes, per token on the write routes and on the read routes.
    LIMIT_DEVICE_WRITES = 10
    LIMIT_DEVICE_WRITES_BURST = 100
    LIMIT_INGEST_TOKEN = 100
    LIMIT_INGEST_TOKEN_BURST = 1000
    LIMIT_READ_TOKEN = 20
    LIMIT_READ_TOKEN_BURST = 200
    # How long a POST's Idempotency-Key answers retries, and how long a request in flight holds it.
    IDEMPOTENCY_RETENTION_SECONDS = 86_400
    IDEMPOTENCY_LEASE_SECONDS = 30
    # PEM files that make python serve.py answer HTTPS and HTTP/2 on its address; "" for plain HTTP.
    TLS_CERTIFICATE = ""
    TLS_KEY = ""


class DevelopmentConfig(Config):
    """Settings for local development, selected by DEVELOPMENT_SETTINGS."""

    DEBUG = True
    DATABASE_FILE = "development_database.db"
    AUTH = "open"
    REQUEST_LOG = ""  # the development server logs each request itself
    LIMIT_DEVICE_WRITES = LIMIT_INGEST_TOKEN = LIMIT_READ_TOKEN = 0


class TestingConfig(Config):
    """Settings for tests, selected by TESTING_SETTINGS."""

    TESTING = True
    DATABASE_FILE = "test_database.db"
    AUTH = "open"
    ROLLUP_BUILDER = False  # tests build the rollups in steps they choose; answers read raw meanwhile
    REQUEST_LOG = ""
    LIMIT_DEVICE_WRITES = LIMIT_INGEST_TOKEN = LIMIT_READ_TOKEN = 0  # tests that need limits set them


def select_config(environ=os.environ):
    """Return the config class the environment asks for."""
    if environ.get("TESTING_SETTINGS"):
        return TestingConfig
    if environ.get("DEVELOPMENT_SETTINGS"):
        return DevelopmentConfig
    return Config


def load_settings(config):
    """Fill a Flask Config from the class and the variables of this process's environment, checking types."""
    config.from_object(select_config())
    for name, key in ENV_ALIASES.items():
        if os.environ.get(name):
            value = os.environ[name]
            config[key] = value if key == "SQLALCHEMY_DATABASE_URI" else _number(name, value)
    config.from_prefixed_env(ENV_PREFIX)
    for name in dir(Config):
        default = getattr(Config, name)
        if name.isupper() and isinstance(default, (int, float, str)) and not isinstance(config[name], type(default)):
            if not (isinstance(default, float) and isinstance(config[name], int)):
                raise ValueError(f"{ENV_PREFIX}_{name} must be {type(default).__name__}, like its default "
                                 f"{default!r}, not {config[name]!r}")
    if not VALUE_LIMITS[0] <= config["VALUE_MIN"] <= config["VALUE_MAX"] <= VALUE_LIMITS[1]:
        raise ValueError(f"{ENV_PREFIX}_VALUE_MIN and {ENV_PREFIX}_VALUE_MAX must make a range within "
                         f"{VALUE_LIMITS[0]} to {VALUE_LIMITS[1]}, not {config['VALUE_MIN']} to {config['VALUE_MAX']}")
    return config


def _number(name, text):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None


def database_uri(config):
    """Return the database URI, with a relative SQLite path resolved against the working directory.

    Flask-SQLAlchemy would otherwise resolve it against the instance folder.
    """
    url = make_url(config.get("SQLALCHEMY_DATABASE_URI") or "sqlite:///" + config["DATABASE_FILE"])
    in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    if url.get_backend_name() == "sqlite" and not in_memory and not url.database.startswith("file:"):
        url = url.set(database=os.path.abspath(url.database))
    return url.render_as_string(hide_password=False)
