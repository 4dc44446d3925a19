"""Logging for people: vital-etl's own errors already name the problem, the place and the
fix, so the traceback Prefect attaches to a failed run only buries that line."""

from __future__ import annotations

import logging

from core.errors import VitalError


class HideTracebackOfKnownErrors(logging.Filter):
    """Drop exc_info from records about a VitalError; unexpected errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, VitalError):
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    """Add the filter to every handler of the root and prefect loggers (idempotent)."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("prefect")]
    for logger in [logging.getLogger(), *map(logging.getLogger, names)]:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, HideTracebackOfKnownErrors) for f in handler.filters):
                handler.addFilter(HideTracebackOfKnownErrors())
