"""One logging set-up for the gateway's processes: JSON lines in production, text in development.

    RELIEF_LOG_FORMAT   json | text   (default: json in production, text in development)
    RELIEF_LOG_LEVEL    INFO          (the gateway's own loggers; libraries stay at WARNING)
    RELIEF_LOG_FILE     a file that receives the same lines as well (appended; stderr keeps them)

A JSON line carries ``time``, ``level``, ``logger``, ``message`` and the record's extra fields
(``request_id``, ``subject``, ``department``, ``operation``, ``duration_ms`` … see
``gateway.request_log``). Exceptions are written as their type, the innermost location and the
frames (file:line function), never local variables; their message is cut to the driver's error
class for database errors (the SQL text and its parameters stay out) and has long digit runs
(ID numbers, phones) masked otherwise. Personal data must never be passed to a logger in the
first place: ``tests/logscan.py`` scans every record of a full test run for seeded plaintext.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import sysconfig
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.domain.settings import Settings

# Attributes every LogRecord has: anything else on a record came in through ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
# uvicorn's copy of its message with terminal colours.
_DROPPED = frozenset({"color_message"})
# A run of 11+ digits (optionally ending in X) is an ID number, a phone or worse: masked.
_LONG_NUMBER = re.compile(r"\d{11,}[0-9Xx]?")
_MAX_MESSAGE = 500
_MAX_FRAMES = 20

# The gateway's own loggers follow RELIEF_LOG_LEVEL; everything else (SQLAlchemy, asyncio,
# uvicorn's error log) stays at WARNING so a production log is about the gateway.
OWN_LOGGERS = ("gateway", "authz", "schema", "adapters", "relief")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def mask_numbers(text: str) -> str:
    return _LONG_NUMBER.sub("[已隐去]", text)


def exception_fields(exc_info: ExcInfo) -> dict[str, Any]:
    """What the log keeps of an exception: type, where, frames, and a message without data."""
    exc_type, exc, tb = exc_info
    frames = traceback.extract_tb(tb)
    ours = [i for i, frame in enumerate(frames) if not _is_library(frame.filename)]
    # The application's frames and the innermost library frames (a database driver's stack
    # is long and says little).
    kept = sorted(set(ours[-_MAX_FRAMES:]) | set(range(max(0, len(frames) - 8), len(frames))))
    fields: dict[str, Any] = {
        "exc_type": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "exc_message": safe_exception_message(exc),
        "exc_frames": [_frame(frames[i]) for i in kept],
    }
    if frames:
        # Where in the application it went wrong: the innermost frame outside libraries.
        fields["exc_where"] = _frame(frames[ours[-1] if ours else -1])
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        fields["exc_cause"] = f"{type(cause).__module__}.{type(cause).__qualname__}"
    return fields


def safe_exception_message(exc: BaseException) -> str:
    """The message of ``exc`` fit for a log line.

    SQLAlchemy errors print the statement and its bound parameters (ciphertexts, blind indexes,
    and in a driver's "invalid input for query argument" even a plaintext): only the driver's
    error class and SQLSTATE are kept. Other messages keep their words, long numbers masked.
    """
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        original = getattr(exc, "orig", None)
        if original is None:
            return type(exc).__name__
        state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        kind = type(original).__name__
        return f"{kind} (SQLSTATE {state})" if state else kind
    return mask_numbers(str(exc))[:_MAX_MESSAGE]


def _frame(frame: traceback.FrameSummary) -> str:
    return f"{_short(frame.filename)}:{frame.lineno} {frame.name}"


def _is_library(filename: str) -> bool:
    return "site-packages/" in filename or filename.startswith(_STDLIB) or "<frozen" in filename


_STDLIB = sysconfig.get_paths()["stdlib"]


def _short(filename: str) -> str:
    """Paths from the package or site-packages onwards (no home directories in logs)."""
    for marker in ("site-packages/", "/gateway/", "/authz/", "/schema/", "/adapters/"):
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index + 1 if marker.startswith("/") else index + len(marker) :]
    return Path(filename).name


class JsonFormatter(logging.Formatter):
    """One JSON object per line, UTF-8 (Chinese stays readable)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in _DROPPED:
                line[f"extra_{key}" if key in line else key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line.update(exception_fields(record.exc_info))
        if record.stack_info:
            line["stack"] = [ln for ln in record.stack_info.splitlines() if ln.startswith("  File")]
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Development: one readable line, extra fields as ``key=value``; exceptions as the JSON
    formatter keeps them (type, location, frames), not Python's full traceback text."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_") and key not in _DROPPED
        ]
        if extras:
            text += " [" + " ".join(extras) + "]"
        if record.exc_info and record.exc_info[1] is not None:
            fields = exception_fields(record.exc_info)
            text += f"\n  {fields['exc_type']}: {fields['exc_message']}"
            text += "".join(f"\n    at {frame}" for frame in fields["exc_frames"])
        return text


_HANDLER_MARK = "_relief_handler"


def configure_logging(
    *,
    production: bool,
    log_format: str | None = None,
    level: str | None = None,
    log_file: Path | None = None,
    stderr: bool = True,
) -> None:
    """Install the gateway's handlers on the root logger (idempotent: replaces its own).

    ``stderr=False`` leaves the console alone (commands whose output a clerk reads) and only
    adds ``log_file`` when one is configured.
    """
    fmt = (log_format or ("json" if production else "text")).lower()
    if fmt not in ("json", "text"):
        from gateway.domain.errors import ConfigurationError

        raise ConfigurationError(f"RELIEF_LOG_FORMAT 应为 json 或 text, 收到 {log_format!r}")
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    elif handlers:
        # A command's console stays as it was without a handler (Python's last resort:
        # warnings and errors, message only); the file gets everything.
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("%(message)s"))
        setattr(console, _HANDLER_MARK, True)
        root.addHandler(console)
    if not handlers:
        return
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    own_level = (level or "INFO").upper()
    if own_level not in logging.getLevelNamesMapping():
        from gateway.domain.errors import ConfigurationError

        raise ConfigurationError(f"RELIEF_LOG_LEVEL 应为 DEBUG/INFO/WARNING/ERROR, 收到 {level!r}")
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own_level)
    # uvicorn's access log prints the full path, query string included: a GET /graphql?query=
    # carries its literal arguments (an ID number). The gateway's request log replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    # strawberry logs every GraphQL error with the printed query source (literal values)
    # and a traceback; gateway.http.graphql logs what is unexpected, without them.
    logging.getLogger("strawberry.execution").disabled = True


def configure_from_settings(settings: Settings, *, stderr: bool = True) -> None:
    """``configure_logging`` from RELIEF_LOG_FORMAT / RELIEF_LOG_LEVEL / RELIEF_LOG_FILE."""
    configure_logging(
        production=settings.is_production,
        log_format=settings.log_format,
        level=settings.log_level,
        log_file=settings.log_file,
        stderr=stderr,
    )


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own ``log_config``: propagate to the root handlers configured above instead of
    installing its own (which would print in another format and keep the access log)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
