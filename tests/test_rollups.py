"""The rollups answer exactly what the raw readings answer: for any window, zone and interval, before, during and
after a rebuild, after direct writes by other programs, and after the table is dropped and made anew."""
import json
import random
import zoneinfo

import pytest
import sqlalchemy as sa
from assertions import assert_error, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.statistics import builder, fleet, folding, planner, rollups, triggers
from models import Rollup, RollupState, db

START = 1_704_067_200 - 5 * 3600  # 2023-12-31T19:00Z: windows start mid-day in every zone
SPAN = 45 * 86_400  # over six weeks: whole weeks, days and hours, and edges of each
DEVICES = ("dev-a", "dev-b", "dev-c")
TYPES = ("temperature", "humidity")
ZONES = ("UTC", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns")
INTERVALS = ("1d", "2d", "1w", "2w", "90000", "86400", "25h", "36h", "7d")
METRICS = ("min", "max", "median", "mean", "mode", "quartiles")
QUICK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def readings(seed, count):
    """Return readings of every device and type at random seconds of the span, values in a drifting band."""
    rng = random.Random(seed)
    return [{"device_uuid": rng.choice(DEVICES), "type": rng.choice(TYPES), "value": rng.randint(15, 35),
             "date_created": START + rng.randrange(SPAN)} for _ in range(count)]


def post_all(client, batch):
    """Post readings as a gateway batch, device batches and single readings, as clients do."""
    third = len(batch) // 3
    assert client.post("/readings/", json=batch[:third]).status_code == 201
    for device in DEVICES:
        mine = [{key: r[key] for key in ("type", "value", "date_created")} for r in batch[third:2 * third]
                if r["device_uuid"] == device]
        if mine:
            assert client.post(f"/devices/{device}/readings/", json=mine).status_code == 201
    for reading in batch[2 * third:]:
        body = {key: reading[key] for key in ("type", "value", "date_created")}
        assert client.post(f"/devices/{reading['device_uuid']}/readings/", json=body).status_code == 201


def insert_directly(application, batch):
    """Insert readings with plain SQL, as another program would."""
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO readings (device_uuid, type, value, date_created) "
                                   "VALUES (:device_uuid, :type, :value, :date_created)"), batch)


def serving(application, device, reading_type):
    """Tell whether the rollups answer for a device and type, in the snapshot an answer would read."""
    filters = {"device_uuid": device, "type": reading_type}
    with application.app_context(), folding.snapshot(db.engine, filters) as (connection, current):
        return rollups.serving(connection, device, reading_type, current)


windows = st.tuples(st.integers(START - 86_400, START + SPAN + 86_400), st.integers(0, SPAN + 2 * 86_400))


def ask_everything(client, ask, device, reading_type, low, length, zone, interval):
    """Compare every statistic, a series and the summary over one window."""
    window = {"type": reading_type, "start": low, "end": low + length}
    for metric in METRICS:
        ask(client, f"/devices/{device}/readings/{metric}/", window)
    ask(client, f"/devices/{device}/readings/series/", {**window, "interval": interval, "tz": zone})
    ask(client, f"/devices/{device}/readings/series/", {"type": reading_type, "interval": "1w", "tz": zone})
    ask(client, "/devices/summary/", window)


@QUICK
@given(window=windows, zone=st.sampled_from(ZONES), interval=st.sampled_from(INTERVALS),
       device=st.sampled_from(DEVICES), reading_type=st.sampled_from(TYPES))
def test_rollups_answer_as_the_raw_readings_for_any_window(rollup_app, answers, window, zone, interval, device,
                                                          reading_type):
    _application, client = rollup_app
    ask_everything(client, answers, device, reading_type, *window, zone, interval)


@pytest.fixture
def rollup_app(make_app, monkeypatch):
    """An app whose readings came every way clients send them, with the rollups serving.

    Its readings are few, and the fleet summary would read most windows raw: it reads the rollups however sparse.
    """
    monkeypatch.setattr(fleet, "DENSE", 0)
    application = make_app()
    client = application.test_client()
    post_all(client, readings(1, 1500))
    assert all(serving(application, device, kind) for device in DEVICES for kind in TYPES)
    with application.app_context(), db.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(Rollup)).scalar() > 100
    return application, client


def test_direct_inserts_updates_and_deletes_are_in_the_next_answer(rollup_app, answers):
    application, client = rollup_app
    insert_directly(application, readings(2, 300))
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("UPDATE readings SET value = value + 3 WHERE date_created % 7 = 0"))
        connection.execute(sa.text("UPDATE readings SET date_created = date_created + 86400 WHERE value = 20"))
        connection.execute(sa.text("DELETE FROM readings WHERE date_created % 5 = 0"))
        connection.execute(sa.text("UPDATE readings SET device_uuid = 'dev-c' WHERE device_uuid = 'dev-b' "
                                   "AND value > 30"))
    for device in DEVICES:
        assert serving(application, device, "temperature")
        ask_everything(client, answers, device, "temperature", START + 3_600 * 7 + 13, SPAN - 86_400, "Europe/London",
                       "1d")
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM readings"))  # an operator's DELETE of everything
    ask_everything(client, answers, "dev-a", "temperature", START, SPAN, "UTC", "1w")
    assert client.get("/devices/summary/", query_string={"type": "temperature"}).get_json() == []


def test_answers_stay_exact_during_and_after_a_rebuild(make_app, answers):
    application = make_app()
    client = application.test_client()
    with application.app_context():
        engine = db.engine
        with engine.begin() as connection:  # readings stored before the rollups, as by an older release
            for statement in triggers.drop_statements(connection.dialect.name):
                connection.exec_driver_sql(statement)
    insert_directly(application, readings(3, 1500))
    with application.app_context():
        builder.arm(engine)
    steps, rng = 0, random.Random(4)
    while True:
        device, kind = rng.choice(DEVICES), rng.choice(TYPES)
        ask_everything(client, answers, device, kind, START + rng.randrange(SPAN // 2), rng.randrange(SPAN),
                       rng.choice(ZONES), rng.choice(INTERVALS))
        post_all(client, readings(100 + steps, 30))  # behind, at and ahead of the frontier
        with application.app_context():
            going = builder.step(engine, chunk_rows=200)
        steps += 1
        if not going:
            break
    assert steps > 5
    with application.app_context(), engine.connect() as connection:
        assert connection.execute(sa.select(RollupState.status)).scalar() == "ready"
        if connection.dialect.name == "postgresql":  # the rebuild's end vacuums and analyzes, not autovacuum later
            assert connection.execute(sa.text(
                "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'rollups' AND schemaname = current_schema()")).scalar()
    for device in DEVICES:
        assert serving(application, device, "humidity")
        ask_everything(client, answers, device, "humidity", START + 1234, SPAN, "Asia/Kathmandu", "1d")


def test_a_table_dropped_and_made_anew_is_read_raw_until_armed_again(rollup_app, answers):
    application, client = rollup_app
    with application.app_context(), db.engine.begin() as connection:  # the legacy harness's way
        connection.execute(sa.text("DROP TABLE readings"))
        connection.execute(sa.text("CREATE TABLE readings (device_uuid TEXT, type TEXT, value INTEGER, "
                                   "date_created BIGINT)"))
    insert_directly(application, readings(5, 400))
    assert not serving(application, "dev-a", "temperature")
    ask_everything(client, answers, "dev-a", "temperature", START, SPAN, "UTC", "1d")
    with application.app_context():
        builder.arm(db.engine)
        builder.build(db.engine, chunk_rows=100)
    assert serving(application, "dev-a", "temperature")
    ask_everything(client, answers, "dev-a", "temperature", START + 999, SPAN - 5000, "Australia/Lord_Howe", "2d")


def test_readings_the_rollups_cannot_hold_send_their_device_raw(rollup_app, answers, database_uri):
    application, client = rollup_app
    odd = {"device_uuid": "dev-a", "type": "temperature", "value": 21, "date_created": -5}
    if database_uri.startswith("sqlite"):
        odd["value"] = 21.5  # tables made by other tools may hold REAL values
    insert_directly(application, [odd])
    assert not serving(application, "dev-a", "temperature")
    assert serving(application, "dev-a", "humidity") and serving(application, "dev-b", "temperature")
    answers(client, "/devices/dev-a/readings/mean/", {"type": "temperature"})
    answers(client, "/devices/summary/", {"type": "temperature", "start": START, "end": START + SPAN})


def test_rollups_cover_a_window_with_few_pieces(rollup_app):
    application, _ = rollup_app
    with application.app_context(), db.engine.connect() as connection:
        levels = dict(connection.execute(sa.select(Rollup.level, sa.func.count()).group_by(Rollup.level)).all())
        assert set(levels) == {3600, 86_400, 604_800}
        totals = connection.execute(sa.select(Rollup.level, sa.func.sum(Rollup.total)).group_by(Rollup.level)).all()
    assert len({total for _, total in totals}) == 1  # every level counts every reading once


def test_summary_pages_and_sorts_the_fleet(rollup_app, answers):
    _application, client = rollup_app
    window = {"type": "temperature", "start": START, "end": START + 7 * 86_400 - 1}
    whole = answers(client, "/devices/summary/", window).get_json()
    for sort in ("number_of_readings", "device_uuid", "max_reading_value", "median_reading_value",
                 "mean_reading_value", "quartile_1_value", "quartile_3_value"):
        for order in ("asc", "desc"):
            rows = answers(client, "/devices/summary/", {**window, "sort": sort, "order": order}).get_json()
            expected = sorted(whole, key=lambda row: row["device_uuid"])
            expected.sort(key=lambda row: row[sort], reverse=order == "desc")
            if sort != "device_uuid":  # ties by device, ascending
                expected = sorted(expected, key=lambda row: (-row[sort] if order == "desc" else row[sort],
                                                             row["device_uuid"]))
            assert rows == expected, (sort, order)
            page = answers(client, "/devices/summary/", {**window, "sort": sort, "order": order, "offset": 1,
                                                         "limit": 1}).get_json()
            assert page == expected[1:2]
    day = {"type": "temperature", "start": START + 5 * 3600, "end": START + 5 * 3600 + 86_399}
    first_page = answers(client, "/devices/summary/", {**day, "limit": 2}).get_json()
    assert first_page == answers(client, "/devices/summary/", day).get_json()[:2]


def test_summary_of_a_decade_merges_more_buckets_than_one_query_takes(rollup_app, answers):
    application, client = rollup_app
    rng = random.Random(10)
    decade = 10 * 365 * 86_400
    insert_directly(application, [{"device_uuid": rng.choice(DEVICES), "type": "temperature",
                                   "value": rng.randint(0, 100), "date_created": START - rng.randrange(decade)}
                                  for _ in range(2000)])
    window = {"type": "temperature", "start": START - decade + 4321, "end": START + SPAN - 4321}
    assert len(planner.cover(window["start"], window["end"] + 1)) > fleet.ARMS_PER_QUERY
    rows = answers(client, "/devices/summary/", window).get_json()
    assert sum(row["number_of_readings"] for row in rows) > 2000


@pytest.mark.parametrize("per_week, reads_raw", [(1, True), (12, False)])
def test_summary_reads_raw_readings_where_rollups_hold_about_one_each(make_app, answers, monkeypatch, per_week,
                                                                        reads_raw):
    application = make_app()
    rng = random.Random(per_week)
    insert_directly(application, [{"device_uuid": f"dev-{device}", "type": "temperature", "value": rng.randint(0, 100),
                                   "date_created": START + week * 7 * 86_400 + rng.randrange(600)}
                                  for device in range(20) for week in range(8) for _ in range(per_week)])
    grouped = []
    original = fleet.groupings.device_histograms
    monkeypatch.setattr(fleet.groupings, "device_histograms", lambda *args: grouped.append(args) or original(*args))
    window = {"type": "temperature", "start": START - 3600, "end": START + 8 * 7 * 86_400}
    rows = answers(application.test_client(), "/devices/summary/", window).get_json()
    assert len(rows) == 20 and sum(row["number_of_readings"] for row in rows) == 20 * 8 * per_week
    assert len(grouped) == (2 if reads_raw else 1)  # the answer from the raw readings, and maybe the one served


def test_a_database_of_the_previous_release_is_stamped_and_rebuilt(tmp_path, answers):
    from app import create_app
    from canary.schema import FIRST_REVISION, _first_migration, head_revision

    url = f"sqlite:///{tmp_path}/previous.db"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        _first_migration().create_first_release_schema(connection)
        connection.execute(sa.text("INSERT INTO readings (device_uuid, type, value, date_created) "
                                   "VALUES (:device_uuid, :type, :value, :date_created)"), readings(6, 500))
    engine.dispose()
    application = create_app({"SQLALCHEMY_DATABASE_URI": url, "AUTH": "open"})
    client = application.test_client()
    answers(client, "/devices/dev-b/readings/median/", {"type": "humidity"})  # the first request migrates
    with application.app_context(), db.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        assert FIRST_REVISION < head_revision()
        assert connection.execute(sa.select(RollupState.status)).scalar() == "building"
    assert not serving(application, "dev-b", "humidity")
    with application.app_context():
        background = builder.Builder(db.engine)
        tended = 0
        while background.tend():  # what the builder's thread does: arm the triggers, then build step by step
            tended += 1
    assert tended >= 1 and serving(application, "dev-b", "humidity")
    ask_everything(client, answers, "dev-b", "humidity", START, SPAN, "Europe/London", "1w")
    with application.app_context():
        db.engine.dispose()


def test_series_of_a_year_in_london_reads_rollups_not_raw_readings(rollup_app, monkeypatch):
    _application, client = rollup_app
    raw_ranges = []
    original = rollups.raw_histograms
    monkeypatch.setattr(rollups, "raw_histograms",
                        lambda connection, device, kind, raws: raw_ranges.append(len(set(raws))) or original(
                            connection, device, kind, raws))
    response = client.get("/devices/dev-a/readings/series/", query_string={
        "type": "temperature", "interval": "1d", "tz": "Europe/London", "start": START, "end": START + SPAN})
    assert response.status_code == 200 and len(response.get_json()["buckets"]) >= 45
    assert raw_ranges == [1]  # the window's first edge; every London day is whole UTC days and hours


def test_json_of_a_rollup_row_is_a_histogram(rollup_app):
    application, _ = rollup_app
    with application.app_context(), db.engine.connect() as connection:
        text = connection.execute(sa.select(sa.cast(Rollup.hist, sa.Text)).limit(1)).scalar()
    assert all(int(key) >= 0 and count > 0 for key, count in json.loads(text).items())


def test_zones_of_the_test_are_iana_names():
    assert all(zoneinfo.ZoneInfo(zone) for zone in ZONES)


def test_rollups_cli_shows_the_state_and_rebuilds(rollup_app, answers):
    application, client = rollup_app
    runner = application.test_cli_runner()
    shown = runner.invoke(args=["rollups", "status"])
    assert shown.exit_code == 0 and "triggers: armed" in shown.output and "status: ready" in shown.output
    with application.app_context(), db.engine.begin() as connection:
        for statement in triggers.drop_statements(connection.dialect.name):
            connection.exec_driver_sql(statement)
    insert_directly(application, readings(7, 300))
    assert "triggers: missing" in runner.invoke(args=["rollups", "status"]).output
    assert not serving(application, "dev-c", "temperature")
    rebuilt = runner.invoke(args=["rollups", "rebuild", "--chunk-rows", "100"])
    assert rebuilt.exit_code == 0 and "built" in rebuilt.output
    assert serving(application, "dev-c", "temperature")
    assert "status: ready" in runner.invoke(args=["rollups", "status"]).output
    ask_everything(client, answers, "dev-c", "temperature", START, SPAN, "America/St_Johns", "36h")


def test_builder_thread_arms_lost_triggers_and_rebuilds(make_app, answers):
    application = make_app(ROLLUP_BUILDER=True)
    client = application.test_client()
    post_all(client, readings(8, 300))
    started = application.extensions["canary_rollups_builder"]  # the first request started it
    assert started.is_alive()
    started.stopping.set()
    started.join()
    with application.app_context(), db.engine.begin() as connection:
        for statement in triggers.drop_statements(connection.dialect.name):
            connection.exec_driver_sql(statement)
    insert_directly(application, readings(9, 300))
    with application.app_context():
        builder_thread = builder.Builder(db.engine, idle_seconds=0.05)
    builder_thread.start()
    try:
        wait_until(lambda: serving(application, "dev-a", "humidity"))
        ask_everything(client, answers, "dev-a", "humidity", START, SPAN, "Asia/Kolkata", "1d")
    finally:
        builder_thread.stopping.set()
        builder_thread.join()


def test_a_wider_value_range_is_checked_and_rolled_up_exactly(make_app, answers):
    application = make_app(VALUE_MIN=-400, VALUE_MAX=600)  # tenths of a degree from -40.0 to 60.0
    client = application.test_client()
    rng = random.Random(10)
    post_all(client, [{"device_uuid": rng.choice(DEVICES), "type": "temperature", "value": rng.randint(-400, 600),
                       "date_created": START + rng.randrange(SPAN)} for _ in range(900)])
    assert serving(application, "dev-a", "temperature")
    ask_everything(client, answers, "dev-a", "temperature", START + 77, SPAN - 1000, "Asia/Kolkata", "1d")
    for value in (-401, 601):
        refused = assert_error(client.post("/devices/dev-a/readings/", json={"type": "temperature", "value": value}),
                               422)
        assert refused["errors"] == {"value": ["Must be greater than or equal to -400 and less than or equal to 600."]}
    document = client.get("/openapi.json").get_json()
    assert document["components"]["schemas"]["Reading"]["properties"]["value"] == {
        "type": "integer", "minimum": -400, "maximum": 600}
