"""gunicorn settings of the benchmark's gunicorn servers (one sync worker per core by default).

    gunicorn -c bench/gunicorn_sync.conf.py app:app

Not the production set-up (that is `python serve.py`): the yardstick the production server is
measured against, as the service was served before it.
"""
import multiprocessing
import os

bind = os.environ.get("BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
# Requests are short and CPU-bound in Python, so one sync worker per core keeps every core busy.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "sync"
accesslog = os.environ.get("ACCESS_LOG")  # unset: no access log
# Ingest and query servers often share a host, and gunicorn's control socket has one default path.
control_socket_disable = True
