"""Stored readings wait, pending, for a fold into the rollups; every answer still counts them, exactly."""
import threading

import pytest
import sqlalchemy as sa
from assertions import wait_until
from test_rollups import DEVICES, START, ask_everything, insert_directly, post_all, readings

from canary.statistics import builder, fleet, folding, rollups
from models import Rollup, RollupState, db


def counted(application):
    """Return how many readings the hour rollups count, and whether any reading is pending."""
    with application.app_context(), db.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(Rollup.total), 0))
                                   .where(Rollup.level == 3600)).scalar()
        return total, folding.pending(connection)


def stored(application):
    with application.app_context(), db.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM readings")).scalar()


@pytest.fixture
def folded_app(make_app, monkeypatch):
    """An app whose readings are all folded, the summary reading rollups however sparse."""
    monkeypatch.setattr(fleet, "DENSE", 0)
    application = make_app()
    post_all(application.test_client(), readings(21, 600))
    assert application.test_client().get("/devices/dev-a/readings/mean/?type=humidity").status_code == 200
    assert counted(application) == (stored(application), False)
    return application, application.test_client()


def test_stored_readings_are_pending_until_an_answer_folds_them(folded_app, answers):
    application, client = folded_app
    post_all(client, readings(22, 90))
    insert_directly(application, readings(23, 30))
    with application.app_context(), db.engine.begin() as connection:  # a pending reading updated, one deleted
        last = connection.execute(sa.text("SELECT max(date_created) FROM readings")).scalar()
        connection.execute(sa.text("UPDATE readings SET value = value + 1 WHERE date_created = :last"), {"last": last})
        connection.execute(sa.text("DELETE FROM readings WHERE date_created = (SELECT min(date_created) "
                                   "FROM readings WHERE value = 20)"))
    total, waiting = counted(application)
    assert waiting and total < stored(application)
    ask_everything(client, answers, "dev-b", "temperature", START + 500, 30 * 86_400, "Europe/London", "1d")
    assert counted(application) == (stored(application), False)


def test_answers_read_raw_readings_while_readings_stay_pending(folded_app, answers, monkeypatch):
    application, client = folded_app
    monkeypatch.setattr(folding, "fold", lambda connection, limit=None: 0)  # as if a writer slipped one in
    post_all(client, readings(24, 30))
    seen = []
    monkeypatch.setattr(rollups, "serving", lambda *args, real=rollups.serving: seen.append(real(*args)) or seen[-1])
    ask_everything(client, answers, "dev-c", "humidity", START, 40 * 86_400, "UTC", "1w")
    assert seen and not any(seen)
    assert counted(application)[1]


def test_answers_read_raw_readings_when_the_rollups_status_fails(folded_app, answers, monkeypatch):
    _, client = folded_app
    post_all(client, readings(26, 30))
    # As on a schema not yet migrated: the failed statement leaves a PostgreSQL transaction unusable.
    monkeypatch.setattr(rollups, "_status_statement", lambda *args: sa.text("SELECT status FROM no_such_table"))
    seen = []
    monkeypatch.setattr(rollups, "serving", lambda *args, real=rollups.serving: seen.append(real(*args)) or seen[-1])
    ask_everything(client, answers, "dev-a", "temperature", START, 40 * 86_400, "Asia/Kathmandu", "1d")
    assert seen and not any(seen)


@pytest.mark.parametrize("database_uri", ["sqlite"], indirect=True)  # PostgreSQL's pending readings are rollup_log's
def test_a_rowid_at_or_below_the_fold_is_counted_by_the_trigger(folded_app, answers):
    application, client = folded_app
    with application.app_context(), db.engine.begin() as connection:
        last = connection.execute(sa.text("SELECT max(rowid) FROM readings")).scalar()
        assert connection.execute(sa.select(RollupState.folded_rowid)).scalar() == last
        connection.execute(sa.text("DELETE FROM readings WHERE rowid IN (:last, 7)"), {"last": last})
    insert_directly(application, readings(25, 1))  # SQLite gives it the rowid just freed
    with application.app_context(), db.engine.begin() as connection:
        assert connection.execute(sa.text("SELECT max(rowid) FROM readings")).scalar() == last
        connection.execute(sa.text("INSERT INTO readings (id, device_uuid, type, value, date_created) "
                                   "VALUES (7, 'dev-a', 'temperature', 33, :date)"), {"date": START + 86_400})
    assert counted(application) == (stored(application), False)
    ask_everything(client, answers, "dev-a", "temperature", START, 45 * 86_400, "Asia/Kolkata", "1d")


@pytest.mark.parametrize("database_uri", ["sqlite"], indirect=True)  # PostgreSQL folds rollup_log, not readings
def test_a_fold_reads_only_the_pending_rows_whatever_the_tables_statistics(folded_app):
    application, _ = folded_app
    with application.app_context(), db.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        # The statistics of a million readings of one device, as the benchmark's database has them:
        # with them, the time index looks cheap to skip-scan in full.
        connection.exec_driver_sql("UPDATE sqlite_stat1 SET stat = '1000000 1000000 500000 1 1' "
                                   "WHERE tbl = 'readings' AND idx = 'ix_readings_device_type_time_value'")
        connection.exec_driver_sql("ANALYZE sqlite_schema")  # makes SQLite load the statistics again
        folded = connection.execute(sa.select(RollupState.folded_rowid)).scalar()
        plan = " ".join(row[-1] for row in connection.execute(
            sa.text(f"EXPLAIN QUERY PLAN {folding._PENDING_COUNTS_SQLITE.text}"), {"folded": folded, "last": folded}))
    assert "INTEGER PRIMARY KEY" in plan and " INDEX " not in plan, plan


def test_the_builder_thread_folds_pending_readings_without_any_answer(make_app):
    application = make_app(ROLLUP_BUILDER=True)
    client = application.test_client()
    post_all(client, readings(26, 300))
    assert application.extensions["canary_rollups_builder"].is_alive()  # the first request started it
    wait_until(lambda: counted(application) == (stored(application), False), what="every reading folded")


def test_folds_come_sooner_while_each_holds_the_writers_too_long_and_later_while_short():
    shortest, longest = builder.FOLD_PAUSES
    long_fold, short_fold = 2 * builder.FOLD_HOLD_SECONDS, builder.FOLD_HOLD_SECONDS / 10
    pauses = [longest]
    for _ in range(10):
        pauses.append(builder.next_fold_pause(pauses[-1], long_fold))
    assert pauses == sorted(pauses, reverse=True) and pauses[-1] == shortest and len(set(pauses)) > 2
    for _ in range(10):
        pauses.append(builder.next_fold_pause(pauses[-1], short_fold))
    assert pauses[10:] == sorted(pauses[10:]) and pauses[-1] == longest
    in_between = 0.75 * builder.FOLD_HOLD_SECONDS
    assert all(builder.next_fold_pause(pause, in_between) == pause for pause in set(pauses))


def test_answers_stay_exact_while_readings_arrive(folded_app, answers):
    application, client = folded_app
    batches = [readings(30 + number, 40) for number in range(4)]
    failures = []

    def post(batch):
        sender = application.test_client()
        for reading in batch:
            body = {key: reading[key] for key in ("type", "value", "date_created")}
            status = sender.post(f"/devices/{reading['device_uuid']}/readings/", json=body).status_code
            if status != 201:
                failures.append(status)

    senders = [threading.Thread(target=post, args=(batch,)) for batch in batches]
    for sender in senders:
        sender.start()
    while any(sender.is_alive() for sender in senders):
        answer = client.get("/devices/dev-a/readings/quartiles/", query_string={"type": "temperature"})
        assert answer.status_code == 200
    for sender in senders:
        sender.join()
    assert failures == []
    for device in DEVICES:
        ask_everything(client, answers, device, "temperature", START, 45 * 86_400, "UTC", "1d")
    assert counted(application) == (stored(application), False)


def test_a_database_at_migration_0004_upgrades_in_place_and_answers_exactly(make_app, answers):
    import flask_migrate

    from canary.schema import MIGRATIONS
    from canary.statistics import builder

    application = make_app()
    client = application.test_client()
    with application.app_context():
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0004")
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0004"
            assert not rollups.armed(connection)
    insert_directly(application, readings(40, 400))  # stored under 0004's schema
    with application.app_context():
        flask_migrate.upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0005"
        background = builder.Builder(db.engine)
        while background.tend():  # the builder arms the triggers and rebuilds
            pass
    assert counted(application) == (stored(application), False)
    post_all(client, readings(41, 60))
    for device in DEVICES:
        ask_everything(client, answers, device, "humidity", START + 321, 40 * 86_400, "Europe/London", "1d")
    assert counted(application) == (stored(application), False)


@pytest.mark.parametrize("database_uri", ["postgresql"], indirect=True)
def test_a_windows_buckets_are_read_one_index_range_at_a_time_on_postgresql(folded_app):
    application, _ = folded_app
    blocks = {3600: {START + 3600 * hour for hour in range(0, 48, 5)},
              86_400: {START + 86_400 * day for day in range(3)}}
    statement, parameters = rollups._blocks_postgresql(blocks)
    with application.app_context(), db.engine.begin() as connection:
        # As where one device holds most rows: the planner then prefers hashing all its buckets to a loop.
        connection.exec_driver_sql("SET LOCAL enable_nestloop = off")
        plan = "\n".join(row[0] for row in connection.execute(
            sa.text(f"EXPLAIN {statement.text}"), {**parameters, "device": "dev-a", "type": "temperature"}))
    assert "Hash" not in plan and "Nested Loop" in plan, plan
