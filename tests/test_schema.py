"""The schema the app creates: its types, its indexes, on PostgreSQL a hypertable-ready key, and the tokens table."""
import json

import flask_migrate
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.schema import MIGRATIONS
from models import Token, db

# Every insert updates each index, so the schema keeps to the one covering index the queries need.
INDEXED_COLUMNS = {("device_uuid", "type", "date_created", "value")}


def inspect_readings(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        return (
            db.engine.dialect.name,
            {column["name"]: column["type"] for column in inspector.get_columns("readings")},
            inspector.get_indexes("readings"),
            inspector.get_unique_constraints("readings"),
            inspector.get_pk_constraint("readings")["constrained_columns"],
        )


def test_schema_has_only_the_access_path_index(app):
    _, _, indexes, _, _ = inspect_readings(app)
    assert {tuple(index["column_names"]) for index in indexes if not index["unique"]} == INDEXED_COLUMNS


def test_schema_stores_epoch_seconds_as_64_bit_integers(app):
    dialect, columns, _, _, _ = inspect_readings(app)
    assert set(columns) == {"id", "device_uuid", "type", "value", "date_created"}
    if dialect == "postgresql":
        assert isinstance(columns["date_created"], sa.BigInteger)
    assert isinstance(columns["value"], sa.Integer)


def test_schema_every_unique_key_includes_date_created_on_postgresql(app):
    dialect, _, indexes, uniques, primary_key = inspect_readings(app)
    if dialect != "postgresql":
        # On SQLite the key is the rowid alias, so identical readings stay separate rows.
        assert primary_key == ["id"]
        return
    unique_keys = [constraint["column_names"] for constraint in uniques]
    unique_keys += [index["column_names"] for index in indexes if index["unique"]]
    unique_keys += [primary_key] if primary_key else []
    assert unique_keys, "readings needs a key that identifies a row"
    assert all("date_created" in key for key in unique_keys)


def test_schema_creation_keeps_existing_readings(app, make_app):
    reading = {"type": "humidity", "value": 40, "date_created": 5}
    assert app.test_client().post("/devices/dev-1/readings/", json=reading).status_code == 201
    restarted = make_app()  # a second start on the same database meets the table and its indexes
    response = restarted.test_client().get("/devices/dev-1/readings/")
    assert response.get_json() == [{**reading, "device_uuid": "dev-1"}]


def test_schema_has_a_tokens_table_keyed_by_a_unique_digest(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        columns = {column["name"]: column for column in inspector.get_columns("tokens")}
        unique_keys = [constraint["column_names"] for constraint in inspector.get_unique_constraints("tokens")]
        unique_keys += [index["column_names"] for index in inspector.get_indexes("tokens") if index["unique"]]
    assert set(columns) == {"id", "digest", "kind", "device_uuid", "label", "created_at", "revoked_at"}
    assert ["digest"] in unique_keys
    assert {name for name, column in columns.items() if column["nullable"]} == {"device_uuid", "label", "revoked_at"}
    assert all(isinstance(columns[name]["type"], sa.Integer) for name in ("created_at", "revoked_at"))  # epoch seconds


def test_tokens_table_refuses_a_digest_twice_and_a_device_token_without_device(app):
    row = {"digest": "0" * 64, "kind": "read", "device_uuid": None, "label": None, "created_at": 1}
    with app.app_context(), db.engine.connect() as connection:
        connection.execute(sa.insert(Token.__table__), row)
        connection.commit()
        for bad in ({**row}, {**row, "digest": "1" * 64, "kind": "device"},
                    {**row, "digest": "2" * 64, "device_uuid": "dev-1"}, {**row, "digest": "3" * 64, "kind": "admin"}):
            with pytest.raises(sa.exc.IntegrityError):
                connection.execute(sa.insert(Token.__table__), bad)
            connection.rollback()


def test_migration_0003_keeps_tokens_and_adds_the_metrics_kind_and_idempotency_keys(app):
    rows = [{"digest": f"{number}" * 64, "kind": kind, "device_uuid": "dev-1" if kind == "device" else None,
             "label": kind, "created_at": number} for number, kind in enumerate(("device", "ingest", "read"), 1)]
    metrics = {"digest": "9" * 64, "kind": "metrics", "device_uuid": None, "label": None, "created_at": 9}
    with app.app_context():
        app.extensions["canary_schema"].ensure()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0002")
        assert "idempotency_keys" not in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as connection:
            connection.execute(sa.insert(Token.__table__), rows)
            connection.commit()
            with pytest.raises(sa.exc.IntegrityError):
                connection.execute(sa.insert(Token.__table__), metrics)
        flask_migrate.upgrade(directory=str(MIGRATIONS))
        assert "idempotency_keys" in sa.inspect(db.engine).get_table_names()
        with db.engine.connect() as connection:
            kept = connection.execute(sa.select(Token.digest, Token.kind, Token.device_uuid, Token.label,
                                                Token.created_at).order_by(Token.created_at)).all()
            connection.execute(sa.insert(Token.__table__), metrics)
            connection.commit()
            with pytest.raises(sa.exc.IntegrityError):  # the other checks survived the table's recreation
                connection.execute(sa.insert(Token.__table__), {**metrics, "digest": "8" * 64, "kind": "admin"})
    assert [tuple(row) for row in kept] == [tuple(row.values()) for row in rows]



histograms = st.dictionaries(st.integers(0, 100).map(str), st.integers(1, 1000), max_size=20)
changes = st.dictionaries(st.integers(0, 100).map(str), st.integers(-1000, 1000), max_size=5)


@pytest.fixture
def postgres_connection(postgres_database_uri):
    """A connection to a PostgreSQL schema migrated to the head revision, for the functions it defines."""
    from app import create_app

    application = create_app({"SQLALCHEMY_DATABASE_URI": postgres_database_uri, "ROLLUP_BUILDER": False})
    with application.app_context():
        application.extensions["canary_schema"].ensure()
        with db.engine.connect() as connection:
            yield connection
        db.engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=histograms, b=changes, data=st.data())
def test_postgresql_histogram_sum_matches_counting(postgres_connection, a, b, data):
    emptied = data.draw(st.sets(st.sampled_from(sorted(a)))) if a else set()
    b = {**b, **{key: -a[key] for key in emptied}}  # the readings of some values all taken off
    summed = postgres_connection.execute(sa.text("SELECT canary_hist_add(CAST(:a AS jsonb), CAST(:b AS jsonb))"),
                                         {"a": json.dumps(a), "b": json.dumps(b)}).scalar()
    expected = {key: a.get(key, 0) + b.get(key, 0) for key in {*a, *b}}
    assert summed == {key: count for key, count in expected.items() if count != 0}
