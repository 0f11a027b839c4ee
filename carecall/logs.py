"""The process's logging: one stderr handler, private at every level, never a flood.

- **Our own records** (``carecall``, ``booking_gate``, ``signalling``, ``peer``) are
  written as they are: their messages are written to carry ids and reasons only.
- **Everyone else's records** (aiohttp, asyncio, aioice, aiortc, SQLAlchemy, ...) keep
  their message template and lose their arguments and traceback: aiohttp's
  ``Error handling request from %s`` would name the client's address, an asyncio error
  names a transport and its peer, a driver's debug line quotes a statement's parameters.
  What remains says what happened (and the exception's type), never with what data.
- **SQL statement logging stays off** at every level: the engine and driver loggers are
  held at WARNING even under ``--log-level DEBUG``.
- **Repeats are folded**: a record at WARNING or above whose template was already
  written less than ``interval`` seconds ago is counted, not written; the next one
  written after the interval says how many were folded.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

OWN = ("carecall", "booking_gate", "signalling", "peer", "tests", "bench", "__main__")
# Loggers that would print SQL, its parameters or rows: WARNING whatever the level asked.
QUIET = ("sqlalchemy", "aiosqlite", "asyncpg", "alembic.runtime")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REPEAT_INTERVAL = 60.0

_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")


def _own(name: str) -> bool:
    return name == "root" or any(name == p or name.startswith(p + ".") for p in OWN)


class PrivacyFilter(logging.Filter):
    """Strips the arguments and traceback from records that are not the project's own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _own(record.name):
            return True
        template = _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else "<…>",
                                    str(record.msg))
        if record.exc_info and record.exc_info[0] is not None:
            template += f" ({record.exc_info[0].__name__})"
        record.msg, record.args = template, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class RepeatFilter(logging.Filter):
    """Writes a repeated WARNING-or-worse record once per ``interval`` with a count."""

    def __init__(self, interval: float = REPEAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        folded = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        if len(self._seen) > 1024:  # many distinct templates: forget the old ones
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        if folded:
            record.msg = f"{record.msg} (and {folded} more like it in the last " \
                         f"{self.interval:g} s)"
        return True


def configure(level: str | int) -> None:
    """Send every record to stderr through both filters; SQL logging off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    # Privacy first: the repeat filter then folds on the template, not on its data.
    handler.addFilter(PrivacyFilter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def loop_exception_handler(loop: Any, context: dict[str, Any]) -> None:
    """asyncio's errors (``socket.accept() out of system resource``, a callback that
    raised) as one line with the exception's type: the default handler writes every
    object of the context, transports and their peer addresses included."""
    error = context.get("exception")
    kind = f" ({type(error).__name__})" if error is not None else ""
    message = str(context.get("message", "asyncio error")).replace("%", "%%")
    # The message is the template, so the repeat filter folds each kind on its own.
    logging.getLogger("carecall.loop").error(message + kind)
