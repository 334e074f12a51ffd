"""granian's logging as python serve.py configures it: granian's own, less one warning that serve explains itself.

granian warns when a worker may run more threads than 2 × cores + 1. On PostgreSQL the app's
threads spend their time waiting for commits they share (canary/ingest/group_commit.py), so
serve prints one line saying so instead of granian's paragraph.
"""
import json
import logging

THREADS_WARNING = "Configuration allows spawning up to"


class WithoutThreadsWarning(logging.Filter):
    """Drop granian's warning about many Python threads."""

    def filter(self, record):
        return not record.getMessage().startswith(THREADS_WARNING)


def write_config(path):
    """Write granian's --log-config file: its default handlers and loggers, with the warning filtered out."""
    config = {
        "filters": {"without_threads_warning": {"()": f"{__name__}.WithoutThreadsWarning"}},
        "handlers": {
            "console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                        "filters": ["without_threads_warning"]},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
    }
    path.write_text(json.dumps(config))
    return path
