"""structlog JSON logging with correlation ids bound per request and per consumed event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_EMAIL = re.compile(r"([A-Za-z0-9._%+'-])[A-Za-z0-9._%+'-]*@([A-Za-z0-9.-]+)")
_SECRET_KEYS = ("token", "code", "authorization", "password", "secret", "email")


def _mask_email(text: str) -> str:
    return _EMAIL.sub(r"\1…@\2", text)


def scrub(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Keep tokens, ticket codes and full email addresses out of every log line."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEYS) and lowered not in ("status_code",):
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _mask_email(value)
    return event_dict


def configure(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level)
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
