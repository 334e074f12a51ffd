"""The group commit of single readings, the hot path: concurrent readings of a process share one INSERT and commit.

A PostgreSQL commit waits for its WAL flush, and a SQLite commit for the writers' lock; readings that
arrive while one group is being written are written together by the next, so a worker with several
threads pays one round trip and one commit per group rather than per reading. A reading is
acknowledged only after the commit that stores it.
"""
import fcntl
import functools
import os
import select
import threading
import weakref

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from canary.database import database_file, file_identity, write_transaction, writers_lock_path
from canary.ingest import idempotency
from canary.monitoring.instruments import COMMIT_GROUP
from models import READING_KEYS, SensorData

_INSERT = sa.insert(SensorData.__table__)
# PostgreSQL's own $1, $2, ... placeholders, as libpq's prepared statements take them.
_POSTGRESQL_NUMBERED = postgresql_psycopg.dialect(paramstyle="numeric_dollar")
_inherited_connections = []  # inherited through fork: never closed by the child, see discard()


class CommitGroup:
    """The readings waiting in one process for the next shared INSERT, and who writes it.

    The first thread to find nobody writing leads: it writes every queued reading, wakes their
    threads, and hands the lead to the first reading queued meanwhile, so that no request waits
    for more than the group before its own.
    """

    _groups = weakref.WeakKeyDictionary()  # engine -> group; a group goes with its engine
    _groups_lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine):
        """Return this process's group for the engine, a new one after dispose() or fork."""
        group = cls._groups.get(engine)
        if group is not None and group.pool is engine.pool and group.pid == os.getpid():
            return group
        with cls._groups_lock:
            group = cls._groups.get(engine)
            if group is None or group.pool is not engine.pool or group.pid != os.getpid():
                if group is None:
                    sa.event.listen(engine, "engine_disposed", cls._forget)
                else:
                    group.connection.discard()
                group = cls._groups[engine] = cls(engine)
        return group

    @classmethod
    def _forget(cls, engine):
        """Close the kept connection when its engine is disposed, as pooled ones are."""
        group = cls._groups.pop(engine, None)
        if group is not None:
            group.connection.discard()

    def __init__(self, engine):
        self.pool, self.pid = engine.pool, os.getpid()
        self.engine = weakref.proxy(engine)
        self.connection = _KeptConnection(engine)
        self.lock = threading.Lock()
        self.queue = []
        self.leading = False

    def submit(self, reading, completion=None):
        """Store one reading; return once it is committed, or raise what stopped the commit.

        `completion` is a claimed Idempotency-Key and its response, written in the same transaction.
        """
        waiter = _Waiter(reading, completion)
        with self.lock:
            self.queue.append(waiter)
            leads = not self.leading
            self.leading = True
        if not leads:
            waiter.wait()
            if not waiter.leads:
                if waiter.error is not None:
                    raise waiter.error
                return
        self._lead(waiter)

    def _lead(self, leader):
        """Write the queued readings as one group, wake their threads, then pass the lead on."""
        with self.lock:
            group, self.queue = self.queue, []
        lost = {}
        try:
            if any(waiter.completion is not None for waiter in group):
                lost = self._write_with_keys(group)
            else:
                self.connection.insert([waiter.reading for waiter in group])
            COMMIT_GROUP.observe(len(group))
            error = None
        except Exception as failure:
            error = failure
        for waiter in group:
            if waiter is not leader:
                waiter.finish(lost.get(id(waiter), error))
        error = lost.get(id(leader), error)
        with self.lock:
            if self.queue:
                self.queue[0].promote()
            else:
                self.leading = False
        if error is not None:
            raise error

    def _write_with_keys(self, group):
        """Write a group with Idempotency-Keys in one transaction that also writes their responses.

        Return {id(waiter): LostClaim} for the readings left out because a retry took their key over.
        """
        lost = {}
        with write_transaction(self.engine) as connection:
            for waiter in group:
                if waiter.completion is not None:
                    key, response = waiter.completion
                    try:
                        idempotency.complete(connection, key, 201, response)
                    except idempotency.LostClaim as error:
                        lost[id(waiter)] = error
            kept = [waiter.reading for waiter in group if id(waiter) not in lost]
            if kept:
                connection.execute(_INSERT, kept)
        return lost


class _Waiter:
    """A reading waiting for its group's commit: a lock held until its thread may go on."""

    __slots__ = ("_released", "completion", "error", "leads", "reading")

    def __init__(self, reading, completion=None):
        self.reading, self.completion, self.error, self.leads = reading, completion, None, False
        self._released = threading.Lock()
        self._released.acquire()

    def wait(self):
        self._released.acquire()

    def finish(self, error):
        self.error = error
        self._released.release()

    def promote(self):
        self.leads = True
        self._released.release()


class _KeptConnection:
    """A DBAPI connection a process keeps outside the pool for single readings, in autocommit."""

    def __init__(self, engine):
        self.engine = weakref.proxy(engine)  # the engine's registry holds this connection, not the reverse
        self.pid, self.path = os.getpid(), database_file(engine)
        self.dbapi = self.lock_file = None

    def __del__(self):
        self.discard()

    def insert(self, readings):
        """Insert readings with one statement, committed on its own, opening the connection if needed."""
        sql, row_keys = _compiled_insert(self.engine.dialect if self.path else _POSTGRESQL_NUMBERED, len(readings))
        try:
            dbapi = self._open()
            if self.path is None:
                self._insert_postgresql(dbapi, sql, row_keys, readings)
            else:
                self._insert_sqlite(dbapi, sql, row_keys, readings)
        except Exception as error:
            self.discard()  # whatever went wrong, the next group starts on a fresh connection
            if not isinstance(error, self.engine.dialect.loaded_dbapi.Error):
                raise
            raise sa.exc.DBAPIError.instance(sql, None, error, self.engine.dialect.loaded_dbapi.Error,
                                             dialect=self.engine.dialect) from error

    def _insert_sqlite(self, dbapi, sql, row_keys, readings):
        """Run the INSERT in autocommit, holding the writers' lock of the database file."""
        parameters = [reading[key] for reading in readings for key in row_keys]
        fcntl.flock(self.lock_file, fcntl.LOCK_EX)
        try:
            dbapi.cursor().execute(sql, parameters)
        finally:
            fcntl.flock(self.lock_file, fcntl.LOCK_UN)

    def _insert_postgresql(self, dbapi, sql, row_keys, readings):
        """Run the INSERT, committed on its own, as a statement prepared on this connection, in one libpq call.

        psycopg's cursor waits for each result in a Python loop, about 30 µs of CPU a statement more
        than libpq's own PQexecPrepared, which waits in C without the GIL: single POSTs on
        PostgreSQL run about 8% faster this way. Parameters go as text, which PostgreSQL casts to
        the column types; device ids hold no NUL byte (schemas.DEVICE_UUID_PATTERN).
        """
        name = f"canary_insert_{len(readings)}".encode()
        if name not in self.prepared:
            _check_result(dbapi, dbapi.pgconn.prepare(name, sql.encode()))
            self.prepared.add(name)
        encoding = dbapi.info.encoding
        values = [str(reading[key]).encode(encoding) for reading in readings for key in row_keys]
        _check_result(dbapi, dbapi.pgconn.exec_prepared(name, values))

    def _open(self):
        """Return a live connection: reopened when stale, in another process, or on a replaced file."""
        if self.dbapi is not None and not self._usable():
            self.discard()
        if self.dbapi is None:
            connection = self.engine.raw_connection()
            connection.detach()  # keeps the pool's connect-time set-up, skips checkout and reset
            self.dbapi, self.file = connection.dbapi_connection, file_identity(self.path) if self.path else None
            self.pid, self.prepared = os.getpid(), set()  # names of the statements prepared on it
            if self.path is not None:
                # SQLite writers of every process take turns on this lock; see canary.database.writers_queue.
                self.lock_file = os.open(writers_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        return self.dbapi

    def _usable(self):
        """Tell whether the kept connection still reaches the database, without a round trip."""
        if self.pid != os.getpid():
            return False
        if self.path is not None:
            return self.file == file_identity(self.path)
        # An idle PostgreSQL connection receives nothing; anything readable is the server's goodbye
        # (a restart's "terminating connection") or the end of the socket.
        socket = self.dbapi.pgconn.socket if not self.dbapi.closed else -1
        return socket >= 0 and not select.select([socket], [], [], 0)[0]

    def discard(self):
        """Let the connection go, whatever state it is in, so that the next use opens a new one."""
        dbapi, self.dbapi = self.dbapi, None
        lock_file, self.lock_file = self.lock_file, None
        if lock_file is not None and self.pid == os.getpid():
            os.close(lock_file)
        if dbapi is None:
            return
        if self.pid != os.getpid():
            # Closing a SQLite connection inherited through fork may checkpoint and delete the WAL
            # that the parent is still using, so a forked child only lets go of it.
            _inherited_connections.append(dbapi)
            return
        try:
            dbapi.close()
        except Exception:  # a broken connection may fail to close; it is dropped either way
            pass


def _check_result(dbapi, result):
    """Raise the psycopg error that a failed libpq result stands for, as psycopg's cursor would."""
    if result.status == psycopg.pq.ExecStatus.COMMAND_OK:
        return
    encoding = dbapi.info.encoding
    if dbapi.pgconn.status == psycopg.pq.ConnStatus.BAD or not result.error_field(psycopg.pq.DiagnosticField.SQLSTATE):
        raise psycopg.OperationalError(result.get_error_message(encoding))  # the connection itself failed
    raise psycopg.errors.error_from_result(result, encoding=encoding)


@functools.lru_cache(maxsize=256)
def _compiled_insert(dialect, rows):
    """Return the SQL of a `rows`-row INSERT for a dialect of positional parameters, and each row's key order."""
    rows_values = [{key: sa.bindparam(f"{key}_{index}") for key in READING_KEYS} for index in range(rows)]
    compiled = _INSERT.values(rows_values).compile(dialect=dialect)
    return compiled.string, [name.rpartition("_")[0] for name in compiled.positiontup[:len(READING_KEYS)]]
