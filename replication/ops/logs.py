"""How node and witness processes log: ``--log-level`` and ``--log-format text|json``.

For: :func:`setup` (stderr, the chosen level and format) and :class:`JsonFormatter`
(one JSON object per line). The code logs ``event key=value key=value ...``; the JSON
form keeps that message whole (``msg``) and also gives the event and each ``key=value``
pair as fields, so a log pipeline can filter on them. Not for: what is logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_PAIR = re.compile(r"(\w+)=(\S*)")
# Keys a pair may not overwrite: the record's own fields.
_RESERVED = frozenset(("ts", "level", "logger", "event", "msg"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601 with ms), level, logger, event, msg, pairs."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        first = msg.split(" ", 1)[0]
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": first if "=" not in first else "",
            "msg": msg,
        }
        for key, value in _PAIR.findall(msg):
            if key not in _RESERVED:
                out[key] = int(value) if value.isdigit() else value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, sort_keys=False)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` (one of :data:`LEVELS`) in ``fmt`` (one of :data:`FORMATS`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
