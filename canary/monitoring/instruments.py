"""The service's Prometheus metrics, counted in each worker process and summed by each scrape.

Under python serve.py every worker keeps its counts in files of PROMETHEUS_MULTIPROC_DIR named
after its slot (WORKER_SLOT: 0, 1, ...) instead of its pid, as prometheus_client does by default:
a worker started again after a crash carries on from the counts of the one it replaces, so totals
never drop, and the folder holds one set of files per slot however often workers restart, so a
scrape reads the same few files after a million requests as after one.
"""
import os
import threading
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, values

from canary.monitoring import deferred

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
WORKER_SLOT = os.environ.get("WORKER_SLOT")
WORKER = None


class DeferredValue:
    """A metric's value in a worker: counted in memory, copied to the worker's file by each deferred flush.

    prometheus_client's own multiprocess value (FileValue) writes its file on every change.
    """

    _multiprocess = True
    FileValue = None  # prometheus_client's class of values kept in the worker's files
    lock = threading.Lock()
    made = []

    def __init__(self, *args, **kwargs):
        self.file_value = self.FileValue(*args, **kwargs)
        self.value = self.written = self.file_value.get()
        with self.lock:
            self.made.append(self)

    def inc(self, amount):
        with self.lock:
            self.value += amount
        if not deferred.running:
            deferred.start()

    def set(self, value, timestamp=None):
        with self.lock:
            self.value = self.written = value
            self.file_value.set(value, timestamp)

    def set_exemplar(self, exemplar):
        return  # as in prometheus_client's multiprocess mode, which keeps no exemplars

    def get(self):
        with self.lock:
            return self.value

    def get_exemplar(self):
        return None

    @classmethod
    def flush(cls):
        """Copy every value changed since the last flush to the worker's files."""
        with cls.lock:
            for value in cls.made:
                if value.value != value.written:
                    value.file_value.set(value.value)
                    value.written = value.value


if MULTIPROCESS_DIR and WORKER_SLOT is not None:
    WORKER = f"worker{int(WORKER_SLOT)}"
    DeferredValue.FileValue = values.MultiProcessValue(process_identifier=lambda: WORKER)
    values.ValueClass = DeferredValue
    deferred.every_flush(DeferredValue.flush)
    # Where a scrape finds this worker's process, for its memory, CPU time and files.
    Path(MULTIPROCESS_DIR, f"{WORKER}.pid").write_text(str(os.getpid()))

REQUESTS = Counter("canary_requests", "Requests the app answered, by route template, method and status.",
                   ["route", "method", "status"])
DURATION = Histogram("canary_request_duration_seconds",
                     "Seconds from a request's arrival at the app to the end of its answer, by route template.",
                     ["route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
READINGS = Counter("canary_readings_stored", "Readings stored, by the route they came by.", ["via"])
COMMIT_GROUP = Histogram("canary_commit_group_readings",
                         "Single readings that shared one INSERT and commit.", buckets=(1, 2, 4, 8, 16, 32, 64, 128))
UNAVAILABLE = Counter("canary_database_unavailable",
                      "503 answers the database caused: unavailable, busy, full or missing_table.", ["cause"])
TOKEN_CHECKS = Counter("canary_token_checks", "Bearer token checks in tokens mode, by outcome.", ["outcome"])
IDEMPOTENCY = Counter("canary_idempotency_keys", "POSTs with an Idempotency-Key, by what became of them.",
                      ["outcome"])
# Per worker ("all": labelled by worker): more than 1 means the worker was started again.
WORKER_STARTS = Gauge("canary_worker_starts", "Times each app worker has started.", multiprocess_mode="all")
WORKER_STARTS.inc()
