"""GET /metrics: every worker's counts in Prometheus's text format, with each worker's process figures
and the requests nginx answered itself."""
import os
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from canary.access.rules import METRICS_READ, access
from canary.monitoring import deferred, instruments
from canary.openapi.describe import documented

bp = Blueprint("monitoring", __name__)
PROXY_COUNTS = "nginx-counts"  # beside the metrics folder: one file per status and route, a line per answer
_registry = None


@bp.get("/metrics", strict_slashes=False)
@access(METRICS_READ)
@documented(errors={404: "CANARY_METRICS is false."}, responses={  # 503: checking a token reads the database
    200: ("The Prometheus text exposition of the whole server: every worker's counts summed.",
          {"type": "string"}, "text/plain")})
def metrics_page():
    """Return the server's metrics for Prometheus to scrape."""
    if not current_app.config["METRICS"]:
        abort(404, "Metrics are turned off on this server (CANARY_METRICS).")
    encode, content_type = choose_encoder(request.headers.get("Accept"))  # Prometheus's text, or OpenMetrics
    deferred.flush()  # this worker's own counts to the moment; the others' are at most FLUSH_SECONDS old
    return Response(encode(registry()), content_type=content_type)


def registry():
    """Return the registry a scrape reads: every worker's files under python serve.py, else this process's."""
    global _registry
    if _registry is None:
        if instruments.MULTIPROCESS_DIR is None:
            _registry = REGISTRY
        else:
            folder = Path(instruments.MULTIPROCESS_DIR)
            _registry = CollectorRegistry()
            MultiProcessCollector(_registry, path=str(folder))
            _registry.register(WorkerProcesses(folder))
            _registry.register(ProxyAnswers(folder.parent / PROXY_COUNTS))
    return _registry


class WorkerProcesses:
    """The process_* figures (memory, CPU time, open files, start time) of each worker, labelled by worker."""

    def __init__(self, folder):
        self.folder = folder

    def collect(self):
        families = {}
        for pid_file in sorted(self.folder.glob("*.pid")):
            try:
                pid = int(pid_file.read_text())
            except (OSError, ValueError):
                continue
            if not os.path.exists(f"/proc/{pid}"):
                continue  # the worker of that slot is being started again
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": pid_file.stem}, sample.value)
        return list(families.values())


class ProxyAnswers:
    """Requests nginx answered without the app (rate limits, oversized bodies, malformed HTTP), from its count files."""

    def __init__(self, folder):
        self.folder = folder

    def collect(self):
        answers = CounterMetricFamily("canary_proxy_answers", "Requests nginx answered itself, without the app, "
                                      "by status and route: 429 is a rate limit's refusal.", labels=["status", "route"])
        limited = CounterMetricFamily("canary_rate_limited", "Requests a rate limit refused (429), by route.",
                                      labels=["route"])
        for counts in sorted(self.folder.glob("*.count")):
            status, _, route = counts.stem.partition("-")
            try:
                total = counts.stat().st_size // 2  # nginx writes ".\n" for each answer
            except OSError:
                continue
            answers.add_metric([status, route], total)
            if status == "429":
                limited.add_metric([route], total)
        return [answers, limited]
