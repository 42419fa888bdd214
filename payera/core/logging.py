"""Structured JSON logs with a request id on every line, masked whatever logger they come from.

The masking runs twice, on purpose: `MaskingFilter` cleans the record (message, args, extras)
before any handler sees it, and the formatters mask what they output (the JSON formatter field
by field, so lines stay valid JSON), which also covers tracebacks.
"""

from __future__ import annotations

import contextvars
import logging

from pythonjsonlogger.json import JsonFormatter

from payera.core.masking import mask_text, mask_value

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # django.request logs after the middleware has returned: read the id off the request.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", None) or request_id_var.get()
        return True


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = str(record.msg)
        record.msg = mask_text(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and not key.startswith("_"):
                setattr(record, key, mask_value(value, stringify=True))
        return True


class MaskingJsonFormatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("timestamp", True)
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s %(request_id)s", *args, **kwargs)

    def process_log_record(self, log_record: dict) -> dict:
        # Mask field by field (tracebacks included) so the line stays valid JSON.
        return mask_value(super().process_log_record(log_record), stringify=True)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return mask_text(super().format(record))
