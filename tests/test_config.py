"""Configuration: which database each setting selects, the configure scripts, server roles and auth modes."""
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from assertions import assert_error

from app import create_app
from configmodule import Config, DevelopmentConfig, TestingConfig, select_config
from models import db

ROOT = Path(__file__).resolve().parent.parent
READING = {"type": "temperature", "value": 21, "date_created": 1000}
SETTINGS = {
    "default": ({}, Config, "database.db"),
    "development": ({"DEVELOPMENT_SETTINGS": "1"}, DevelopmentConfig, "development_database.db"),
    "testing": ({"TESTING_SETTINGS": "1"}, TestingConfig, "test_database.db"),
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """A working directory of its own and no configuration variables set."""
    for name in ("DATABASE_URL", "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS", "CANARY_ROLE", "CANARY_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    apps = []
    yield apps
    for application in apps:
        with application.app_context():
            db.engine.dispose()


def start(apps, **config):
    application = create_app(config)
    apps.append(application)
    return application


def stored_rows(path):
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT device_uuid, type, value, date_created FROM readings").fetchall()
    finally:
        connection.close()


def post_one(application):
    response = application.test_client().post("/devices/dev-1/readings/", data=json.dumps(READING))
    assert response.status_code == 201


@pytest.mark.parametrize("setting", SETTINGS)
def test_settings_select_database_in_working_directory(clean_env, monkeypatch, tmp_path, setting):
    variables, config_class, filename = SETTINGS[setting]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert select_config() is config_class
    application = start(clean_env, AUTH="open")  # so that the post needs no token in production either
    post_one(application)
    assert stored_rows(tmp_path / filename) == [("dev-1", "temperature", 21, 1000)]
    assert not (Path(application.instance_path) / filename).exists()
    others = {name for _, _, name in SETTINGS.values()} - {filename}
    assert not any((tmp_path / other).exists() for other in others)


def test_development_and_testing_flags(clean_env, monkeypatch):
    monkeypatch.setenv("DEVELOPMENT_SETTINGS", "1")
    assert start(clean_env).config["DEBUG"] is True
    monkeypatch.delenv("DEVELOPMENT_SETTINGS")
    monkeypatch.setenv("TESTING_SETTINGS", "1")
    assert start(clean_env).config["TESTING"] is True


@pytest.mark.parametrize("setting", SETTINGS)
def test_database_url_overrides_every_setting(clean_env, monkeypatch, tmp_path, setting):
    for name, value in SETTINGS[setting][0].items():
        monkeypatch.setenv(name, value)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/elsewhere/chosen.db")
    post_one(start(clean_env, AUTH="open"))
    assert stored_rows(tmp_path / "elsewhere" / "chosen.db") == [("dev-1", "temperature", 21, 1000)]
    assert not (tmp_path / SETTINGS[setting][2]).exists()


def test_relative_database_url_is_relative_to_working_directory(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///rel.db")
    application = start(clean_env, AUTH="open")
    post_one(application)
    assert stored_rows(tmp_path / "rel.db") == [("dev-1", "temperature", 21, 1000)]
    assert not (Path(application.instance_path) / "rel.db").exists()


@pytest.mark.parametrize(
    "script, inherited, expected, cleared",
    [
        ("configure_testing.sh", {"DEVELOPMENT_SETTINGS": "1"}, "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS"),
        ("configure_testing.sh", {}, "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS"),
        ("configure_development.sh", {"TESTING_SETTINGS": "1"}, "DEVELOPMENT_SETTINGS", "TESTING_SETTINGS"),
        ("configure_development.sh", {}, "DEVELOPMENT_SETTINGS", "TESTING_SETTINGS"),
    ],
)
def test_configure_scripts_set_variables(script, inherited, expected, cleared):
    env = {key: value for key, value in os.environ.items() if key not in ("TESTING_SETTINGS", "DEVELOPMENT_SETTINGS")}
    output = subprocess.run(
        ["bash", "-c", f"source ./{script}; env -0"], cwd=ROOT, env={**env, **inherited},
        capture_output=True, text=True, check=True,
    ).stdout
    result = dict(line.split("=", 1) for line in output.split("\0") if "=" in line)
    assert result.get(expected)
    assert cleared not in result
    expected_class = {"TESTING_SETTINGS": TestingConfig, "DEVELOPMENT_SETTINGS": DevelopmentConfig}[expected]
    assert select_config(result) is expected_class


@pytest.mark.parametrize(
    "script, filename",
    [(None, "database.db"), ("configure_development.sh", "development_database.db"),
     ("configure_testing.sh", "test_database.db")],
)
def test_sourced_script_then_module_app_uses_its_database(tmp_path, script, filename):
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "TESTING_SETTINGS", "DEVELOPMENT_SETTINGS", "CANARY_ROLE", "CANARY_AUTH")}
    program = (f"import sys, glob; sys.path.insert(0, {str(ROOT)!r}); from app import app; "
               "print(sorted(glob.glob('*.db'))); print(app.test_client().get('/health').status_code)")
    source = f"source {ROOT / script}; " if script else ""
    output = subprocess.run(["bash", "-c", f'{source}exec "$0" -c "$1"', sys.executable, program],
                            cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert output.split() == ["[]", "200"]  # the import touched no database; the first request made its file
    assert [path.name for path in tmp_path.glob("*.db")] == [filename]


def test_role_query_refuses_writes(make_app, monkeypatch, device):
    writer = make_app().test_client()
    assert writer.post(f"/devices/{device}/readings/", data=json.dumps(READING)).status_code == 201
    monkeypatch.setenv("CANARY_ROLE", "query")
    reader = make_app().test_client()
    for path, body in [(f"/devices/{device}/readings/", READING), (f"/devices/{device}/readings", [READING]),
                       ("/readings/", [{**READING, "device_uuid": device}])]:
        response = reader.post(path, data=json.dumps(body))
        assert_error(response, 404)
    assert reader.get(f"/devices/{device}/readings/").get_json() == [{**READING, "device_uuid": device}]
    response = reader.get(f"/devices/{device}/readings/max/", query_string={"type": "temperature"})
    assert response.status_code == 200 and response.get_json()["value"] == 21


def test_role_ingest_refuses_reads(make_app, monkeypatch, device):
    monkeypatch.setenv("CANARY_ROLE", "ingest")
    ingest = make_app().test_client()
    assert ingest.post(f"/devices/{device}/readings/", data=json.dumps(READING)).status_code == 201
    assert ingest.post("/readings/", data=json.dumps([{**READING, "device_uuid": device}])).status_code == 201
    for query_string in ({}, {"type": "temperature"}):
        for path in (f"/devices/{device}/readings/", f"/devices/{device}/readings/mean/"):
            response = ingest.get(path, query_string=query_string)
            assert_error(response, 404)
    monkeypatch.setenv("CANARY_ROLE", "all")
    assert len(make_app().test_client().get(f"/devices/{device}/readings/").get_json()) == 2


@pytest.mark.parametrize("role", ["all", "ingest", "query"])
def test_health_in_every_role(make_app, monkeypatch, role):
    monkeypatch.setenv("CANARY_ROLE", role)
    response = make_app().test_client().get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@pytest.mark.parametrize("role", ["reader", "INGEST", "both", " query"])
def test_invalid_role_raises(clean_env, monkeypatch, tmp_path, role):
    monkeypatch.setenv("CANARY_ROLE", role)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/roles.db")
    with pytest.raises(ValueError):
        create_app()


@pytest.mark.parametrize("setting, expected", [("default", "tokens"), ("development", "open"), ("testing", "open")])
def test_auth_mode_of_each_setting(clean_env, monkeypatch, setting, expected):
    for name, value in SETTINGS[setting][0].items():
        monkeypatch.setenv(name, value)
    assert select_config().AUTH == expected
    application = start(clean_env)
    assert application.config["AUTH"] == expected
    status = application.test_client().post("/devices/dev-1/readings/", data=json.dumps(READING)).status_code
    assert status == (401 if expected == "tokens" else 201)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("mode, status", [("open", 201), ("tokens", 401)])
def test_canary_auth_overrides_every_setting(clean_env, monkeypatch, setting, mode, status):
    for name, value in SETTINGS[setting][0].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CANARY_AUTH", mode)
    application = start(clean_env)
    assert application.config["AUTH"] == mode
    assert application.test_client().post("/devices/dev-1/readings/", data=json.dumps(READING)).status_code == status


NEW_VALUES = {"DATABASE_FILE": "other.db", "MAX_CONTENT_LENGTH": 2048, "MAX_BATCH_CONTENT_LENGTH": 4096,
              "MAX_BATCH": 7, "ROLE": "query", "AUTH": "open", "TOKEN_CACHE_SECONDS": 0.5,
              "SQLITE_BUSY_TIMEOUT_MS": 1234, "STREAM_CHUNK_ROWS": 10, "ROLLUP_BUILDER": False,
              "VALUE_MIN": -400, "VALUE_MAX": 600, "METRICS": False, "REQUEST_LOG": "", "LIMIT_DEVICE_WRITES": 3,
              "LIMIT_DEVICE_WRITES_BURST": 7, "LIMIT_INGEST_TOKEN": 4, "LIMIT_INGEST_TOKEN_BURST": 8,
              "LIMIT_READ_TOKEN": 5, "LIMIT_READ_TOKEN_BURST": 9, "IDEMPOTENCY_RETENTION_SECONDS": 60,
              "IDEMPOTENCY_LEASE_SECONDS": 5, "TLS_CERTIFICATE": "cert.pem", "TLS_KEY": "key.pem"}


@pytest.mark.parametrize("name", [name for name in dir(Config) if name.isupper()])
def test_every_setting_can_be_set_from_the_environment(clean_env, monkeypatch, name):
    if name in ("SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_ENGINE_OPTIONS", "PROPAGATE_EXCEPTIONS"):
        value = {"SQLALCHEMY_DATABASE_URI": "sqlite:////tmp/elsewhere.db", "PROPAGATE_EXCEPTIONS": True,
                 "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": False}}[name]
    else:
        value = NEW_VALUES[name]
    assert value != getattr(Config, name)
    monkeypatch.setenv(f"CANARY_{name}", value if isinstance(value, str) else json.dumps(value))
    assert start(clean_env).config[name] == value


@pytest.mark.parametrize("name", ["DATABASE_URL", "MAX_CONTENT_LENGTH", "MAX_BATCH_CONTENT_LENGTH", "MAX_BATCH"])
def test_earlier_unprefixed_names_still_set_their_settings(clean_env, monkeypatch, tmp_path, name):
    value = f"sqlite:///{tmp_path}/old-name.db" if name == "DATABASE_URL" else "4321"
    monkeypatch.setenv(name, value)
    key = "SQLALCHEMY_DATABASE_URI" if name == "DATABASE_URL" else name
    assert str(start(clean_env).config[key]) == value


def test_prefixed_name_wins_over_the_unprefixed_one(clean_env, monkeypatch):
    monkeypatch.setenv("MAX_BATCH", "10")
    monkeypatch.setenv("CANARY_MAX_BATCH", "20")
    assert start(clean_env).config["MAX_BATCH"] == 20


@pytest.mark.parametrize("name, value", [("CANARY_MAX_BATCH", "many"), ("CANARY_TOKEN_CACHE_SECONDS", '"2"'),
                                         ("CANARY_AUTH", "3"), ("MAX_BATCH", "1.5")])
def test_setting_of_the_wrong_type_refuses_to_start(clean_env, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("CANARY_")):
        create_app()


@pytest.mark.parametrize("value_min, value_max", [(1, 0), (0, 2**31), (-2**31 - 1, 0), (101, 100)])
def test_value_range_that_is_empty_or_past_the_column_refuses_to_start(clean_env, monkeypatch, value_min, value_max):
    monkeypatch.setenv("CANARY_VALUE_MIN", str(value_min))
    monkeypatch.setenv("CANARY_VALUE_MAX", str(value_max))
    with pytest.raises(ValueError, match="CANARY_VALUE_MIN and CANARY_VALUE_MAX"):
        create_app()


@pytest.mark.parametrize("mode", ["Tokens", "OPEN", "none", "token", " open", "off"])
def test_invalid_auth_mode_refuses_to_start(clean_env, monkeypatch, tmp_path, mode):
    monkeypatch.setenv("CANARY_AUTH", mode)
    with pytest.raises(ValueError, match="CANARY_AUTH") as refused:
        create_app()
    assert repr(mode) in str(refused.value)
    assert not list(tmp_path.glob("*.db")), "a refused start touches no database"


@pytest.mark.parametrize("mode, warnings", [("open", 1), ("tokens", 0)])
def test_open_mode_logs_one_warning_at_start(clean_env, monkeypatch, caplog, mode, warnings):
    monkeypatch.setenv("CANARY_AUTH", mode)
    with caplog.at_level(logging.WARNING):
        application = start(clean_env)
        application.test_client().get("/health")
    logged = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(logged) == warnings
    assert all("open" in record.getMessage() and "CANARY_AUTH" in record.getMessage() for record in logged)


def test_app_checks_each_view_and_hook_for_async_once(make_app, monkeypatch, device):
    import flask.app
    checked = []
    real_check = flask.app.iscoroutinefunction
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda func: checked.append(func) or real_check(func))
    client = make_app().test_client()
    reading = {"type": "temperature", "value": 20, "date_created": 1}
    assert client.post(f"/devices/{device}/readings/", json=reading).status_code == 201
    first = len(checked)
    for date in range(2, 5):
        assert client.post(f"/devices/{device}/readings/", json={**reading, "date_created": date}).status_code == 201
    assert first >= 3 and len(checked) == first


def test_app_still_refuses_an_async_view_without_asgiref(make_app):
    async def view():
        return "never"

    with pytest.raises(RuntimeError, match="async"):
        make_app().ensure_sync(view)
