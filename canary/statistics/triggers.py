"""The triggers that keep the rollups exact whoever writes the readings table: this app, older releases, an operator.

An insert counts nothing on the hot path: the new readings are pending until a fold adds them to
their hour, day and week histograms (canary/statistics/folding.py). On SQLite they are the rows
past rollup_state.folded_rowid, so the insert trigger only counts a row inserted at or below it (a
reused or chosen rowid); on PostgreSQL the insert trigger copies the statement's rows to
rollup_log. Deletes and updates take rows off and add them to the histograms at once, where they
were counted; a reading the rollups cannot hold (a value or date that is not an integer, a date
before 1970) marks its device and type as read raw. On PostgreSQL, triggers run per statement
from its transition tables, with rows locked in key order so that concurrent writers never
deadlock, and each holds FOLD_LOCK shared until its transaction ends, so that a fold under the
exclusive lock sees every write that counts in the snapshot it hands on.
"""
from canary.statistics.planner import LEVELS, ROLLUP_HORIZON

# PostgreSQL's advisory lock key that writers of readings hold shared and a fold holds exclusively.
FOLD_LOCK = 0x63616E617279  # "canary"
NAMES = ("canary_rollups_insert", "canary_rollups_delete", "canary_rollups_update_old",
         "canary_rollups_update_new", "canary_rollups_exceptions", "canary_rollups_exceptions_update")
POSTGRESQL_NAMES = ("canary_rollups_insert", "canary_rollups_delete", "canary_rollups_update",
                    "canary_rollups_truncate")


def rollable_sql(row):
    return (f"{row}.device_uuid IS NOT NULL AND {row}.type IS NOT NULL AND typeof({row}.value) = 'integer' "
            f"AND typeof({row}.date_created) = 'integer' AND {row}.date_created >= 0 "
            f"AND {row}.date_created < {ROLLUP_HORIZON}")


def excepted_sql(row):
    """A reading statistics would count (device, type and value set) that the rollups cannot hold."""
    return (f"{row}.device_uuid IS NOT NULL AND {row}.type IS NOT NULL AND {row}.value IS NOT NULL AND NOT "
            f"(typeof({row}.value) = 'integer' AND typeof({row}.date_created) = 'integer' "
            f"AND {row}.date_created >= 0)")


def _bucket(row, width, offset):
    return f"({row}.date_created + {offset}) / {width} * {width} - {offset}"


def finest_bucket_sql(row):
    """Return SQL for the first second of a reading's finest bucket, which lies within one bucket of every level."""
    return _bucket(row, *min(LEVELS))


def _add(row):
    path = f"'$.\"' || {row}.value || '\"'"
    return "\n".join(
        f"INSERT INTO rollups (type, level, bucket, device_uuid, hist, total) VALUES ({row}.type, {width}, "
        f"{_bucket(row, width, offset)}, {row}.device_uuid, json_object(CAST({row}.value AS TEXT), 1), 1) "
        f"ON CONFLICT DO UPDATE SET hist = json_set(hist, {path}, coalesce(json_extract(hist, {path}), 0) + 1), "
        f"total = total + 1;"
        for width, offset in LEVELS)


def counted_sql(row):
    """A row the rollups already count, on SQLite: at or below the folded rowid."""
    return f"{row}.rowid <= (SELECT folded_rowid FROM rollup_state WHERE id = 1)"


def _take(row):
    path = f"'$.\"' || {row}.value || '\"'"
    return "\n".join(
        f"UPDATE rollups SET hist = CASE WHEN json_extract(hist, {path}) > 1 "
        f"THEN json_set(hist, {path}, json_extract(hist, {path}) - 1) ELSE json_remove(hist, {path}) END, "
        f"total = total - 1 WHERE type = {row}.type AND level = {width} AND bucket = {_bucket(row, width, offset)} "
        f"AND device_uuid = {row}.device_uuid;"
        for width, offset in LEVELS)


_COLUMNS = "id, device_uuid, type, value, date_created"


def sqlite_triggers():
    """Return the CREATE TRIGGER statements of SQLite."""
    exception = "INSERT OR IGNORE INTO rollup_exceptions (device_uuid, type) VALUES (NEW.device_uuid, NEW.type);"
    return [
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_insert AFTER INSERT ON readings "
        f"WHEN {rollable_sql('NEW')} AND {counted_sql('NEW')} BEGIN {_add('NEW')} END",
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_delete AFTER DELETE ON readings "
        f"WHEN {rollable_sql('OLD')} AND {counted_sql('OLD')} BEGIN {_take('OLD')} END",
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_update_old AFTER UPDATE OF {_COLUMNS} ON readings "
        f"WHEN {rollable_sql('OLD')} AND {counted_sql('OLD')} BEGIN {_take('OLD')} END",
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_update_new AFTER UPDATE OF {_COLUMNS} ON readings "
        f"WHEN {rollable_sql('NEW')} AND {counted_sql('NEW')} BEGIN {_add('NEW')} END",
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_exceptions AFTER INSERT ON readings "
        f"WHEN {excepted_sql('NEW')} BEGIN {exception} END",
        f"CREATE TRIGGER IF NOT EXISTS canary_rollups_exceptions_update AFTER UPDATE OF {_COLUMNS} ON readings "
        f"WHEN {excepted_sql('NEW')} BEGIN {exception} END",
    ]


_PG_LEVELS = ", ".join(f"({width}, {offset})" for width, offset in LEVELS)


def pg_apply(rows, sign):
    """Return the statement adding (sign 1) or taking off (-1) the rollable readings of a table of readings."""
    return f"""
    INSERT INTO rollups AS r (type, level, bucket, device_uuid, hist, total)
    SELECT type, level, bucket, device_uuid, jsonb_object_agg(value::text, n), sum(n)
    FROM (SELECT t.type, l.width AS level, (t.date_created + l.offs) / l.width * l.width - l.offs AS bucket,
                 t.device_uuid, t.value, {sign} * count(*) AS n
          FROM {rows} t, (VALUES {_PG_LEVELS}) AS l(width, offs)
          WHERE t.device_uuid IS NOT NULL AND t.type IS NOT NULL AND t.value IS NOT NULL
            AND t.date_created >= 0 AND t.date_created < {ROLLUP_HORIZON}
          GROUP BY 1, 2, 3, 4, 5) AS counts
    GROUP BY type, level, bucket, device_uuid
    ORDER BY type, level, bucket, device_uuid
    ON CONFLICT (type, level, bucket, device_uuid) DO UPDATE
        SET hist = canary_hist_add(r.hist, EXCLUDED.hist), total = r.total + EXCLUDED.total;
    """


def _pg_exceptions(rows):
    return f"""
    INSERT INTO rollup_exceptions (device_uuid, type)
    SELECT DISTINCT device_uuid, type FROM {rows}
    WHERE device_uuid IS NOT NULL AND type IS NOT NULL AND value IS NOT NULL
      AND (date_created IS NULL OR date_created < 0)
    ON CONFLICT DO NOTHING;
    """


def _pg_function(name, body):
    return (f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $body$ "
            f"BEGIN PERFORM pg_advisory_xact_lock_shared({FOLD_LOCK}); {body} RETURN NULL; END $body$")


_PG_PENDING = f"""
    INSERT INTO rollup_log (device_uuid, type, value, date_created)
    SELECT device_uuid, type, value, date_created FROM new_rows
    WHERE device_uuid IS NOT NULL AND type IS NOT NULL AND value IS NOT NULL
      AND date_created >= 0 AND date_created < {ROLLUP_HORIZON};
"""


# The sum of two histograms, keys at 0 dropped. It walks only b's few keys, and concatenation (||) keeps a's
# others: a trigger adds a handful of readings to a week's row of up to a hundred values.
HIST_ADD = """CREATE OR REPLACE FUNCTION canary_hist_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT (a || coalesce(jsonb_object_agg(key, total) FILTER (WHERE total <> 0), '{}'::jsonb))
           - coalesce(array_agg(key) FILTER (WHERE total = 0), '{}'::text[])
    FROM (SELECT key, coalesce((a ->> key)::bigint, 0) + value::bigint AS total FROM jsonb_each_text(b)) AS sums $$"""


def postgresql_functions():
    """Return the statements that create (or replace) PostgreSQL's functions, which the triggers call by name."""
    return [
        HIST_ADD,
        _pg_function("canary_rollups_on_insert", _PG_PENDING + _pg_exceptions("new_rows")),
        _pg_function("canary_rollups_on_delete", pg_apply("old_rows", -1)),
        _pg_function("canary_rollups_on_update",
                     pg_apply("old_rows", -1) + pg_apply("new_rows", 1) + _pg_exceptions("new_rows")),
        _pg_function("canary_rollups_on_truncate",
                     "DELETE FROM rollups; DELETE FROM rollup_exceptions; DELETE FROM rollup_log;"),
    ]


def postgresql_statements():
    """Return the statements that create PostgreSQL's functions and triggers, replacing any there are."""
    statements = postgresql_functions()
    for name, event, tables, function in (
            ("canary_rollups_insert", "INSERT", "REFERENCING NEW TABLE AS new_rows", "canary_rollups_on_insert"),
            ("canary_rollups_delete", "DELETE", "REFERENCING OLD TABLE AS old_rows", "canary_rollups_on_delete"),
            ("canary_rollups_update", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
             "canary_rollups_on_update"),
            ("canary_rollups_truncate", "TRUNCATE", "", "canary_rollups_on_truncate")):
        statements += [f"DROP TRIGGER IF EXISTS {name} ON readings",
                       f"CREATE TRIGGER {name} AFTER {event} ON readings {tables} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {function}()"]
    return statements


def create_statements(dialect):
    """Return the statements that put every rollup trigger in place on this dialect."""
    return postgresql_statements() if dialect == "postgresql" else sqlite_triggers()


def drop_statements(dialect):
    """Return the statements that remove every rollup trigger (and PostgreSQL's functions)."""
    if dialect != "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name}" for name in NAMES]
    functions = ("canary_rollups_on_insert", "canary_rollups_on_delete", "canary_rollups_on_update",
                 "canary_rollups_on_truncate")
    return ([f"DROP TRIGGER IF EXISTS {name} ON readings" for name in POSTGRESQL_NAMES]
            + [f"DROP FUNCTION IF EXISTS {name}()" for name in functions]
            + ["DROP FUNCTION IF EXISTS canary_hist_add(jsonb, jsonb)"])
