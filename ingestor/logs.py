"""Structured logs: one JSON object per line on stderr.

Each line has ``time`` (RFC 3339, UTC, ms), ``level``, ``logger``, ``message`` and the
fields passed as ``extra={"fields": {...}}``; exceptions add ``error``. Container Apps
ships stderr to Log Analytics, where the JSON is parsed into columns.

Examples
--------
>>> import json, logging
>>> record = logging.LogRecord("ingestor", logging.INFO, __file__, 1, "connected to %s", ("x",), None)
>>> record.fields = {"source": "binance"}
>>> line = json.loads(JsonFormatter().format(record))
>>> line["level"], line["message"], line["source"]
('INFO', 'connected to x', 'binance')
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["LIBRDKAFKA_LOGGER", "JsonFormatter", "configure_logging", "librdkafka_logger"]

LIBRDKAFKA_LOGGER = "ingestor.librdkafka"
"""Name of the Python logger that librdkafka's own log lines go to (see :func:`librdkafka_logger`)."""


def librdkafka_logger() -> logging.Logger:
    """The logger to pass as confluent-kafka's ``logger`` setting.

    Without it librdkafka prints raw ``%3|<time>|FAIL|rdkafka#producer-1| ...`` lines on
    stderr, between the JSON lines. With it, confluent-kafka hands each of them to this
    logger (level mapped from the syslog level), so they become JSON lines like the rest;
    it forwards them only inside ``poll()`` / ``flush()`` calls, never from librdkafka's
    own threads (confluent-kafka-python, docs/index.rst, "logger" under Configuration).
    """
    return logging.getLogger(LIBRDKAFKA_LOGGER)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send the root logger to stderr as JSON lines (``fmt="json"``) or plain text (``"text"``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # the websockets / azure / aiohttp loggers are chatty at INFO
    for noisy in ("websockets", "azure", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
