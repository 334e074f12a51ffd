"""Writes a worker puts off its requests' path: its metric counts and request log lines.

Each process runs the registered flushes in a background thread every FLUSH_SECONDS, so a request
only counts in memory and appends its line, and a burst of requests costs a few writes instead
of one per request. They also run on a scrape (for the scraping worker's own counts) and at exit;
a worker killed outright loses at most FLUSH_SECONDS of counts and lines.
"""
import atexit
import logging
import multiprocessing.util
import os
import threading
import weakref

FLUSH_SECONDS = 0.1
log = logging.getLogger(__name__)
_flushes = []
_lock = threading.Lock()
running = False  # whether this process's flushing thread is started; writers call start() while it is not


def every_flush(method):
    """Call a bound method in the flushing thread every FLUSH_SECONDS, and at exit, while its object lives."""
    with _lock:
        _flushes.append(weakref.WeakMethod(method))


def flush():
    """Run every registered flush now."""
    for reference in list(_flushes):
        method = reference()
        if method is None:  # its object is gone: an app made and dropped, as tests do
            with _lock:
                _flushes.remove(reference)
            continue
        try:
            method()
        except Exception:  # one failing flush must not stop the others
            log.exception("A deferred write failed")


def start():
    """Start this process's flushing thread, unless it runs already."""
    global running
    with _lock:
        if not running:
            threading.Thread(target=_run, name="canary-deferred-writes", daemon=True).start()
            running = True


def _run():
    stop = threading.Event()  # never set: the thread lives as long as its process
    while not stop.wait(FLUSH_SECONDS):
        flush()


def _after_fork():
    """A forked child has no flushing thread of its own: its first write starts one."""
    global running, _lock
    running, _lock = False, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(flush)
multiprocessing.util.Finalize(None, flush, exitpriority=10)  # a multiprocessing child (a granian worker) skips atexit
