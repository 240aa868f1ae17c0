"""Console logging for the command-line tools: our progress lines, the libraries' warnings.

Orbax, JAX, TensorFlow and Apache Beam log every checkpoint write, compilation and worker
detail at INFO; a filter on the absl handler keeps their warnings and errors and drops the
rest. (Beam's worker processes log for themselves: the converter sets their level with
Beam's `--default_sdk_harness_log_level`.)

A checkpoint write that fails (a full disk) fails in many of Orbax's background writers
at once, each logging its traceback, and the array writes still in flight then finish on
an event loop that is already closed, each printing "RuntimeError: Event loop is closed".
The run's own error (`CheckpointWriteError`) says all of it, so a library's error record
(asyncio's "Task exception was never retrieved" among them) is cut to one line (its
message and the exception's first line), and the closed-loop errors to one line for the
first and none after it. `silence_after_error` keeps what the writers report while the
process exits from following the command's `error:` line.
"""

import asyncio
import gc
import logging
import sys
import traceback
import warnings

from absl import logging as absl_logging

_QUIET_LIBRARY_PATHS = (
    "/orbax/",
    "/jax/_src/",
    "/tensorflow/",
    "/etils/",
    "/apache_beam/",
    "/asyncio/",
)
_CLOSED_LOOP = "Event loop is closed"


class _LibraryInfoFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not any(part in record.pathname for part in _QUIET_LIBRARY_PATHS):
            return True
        if record.levelno < logging.WARNING:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            first_line = (str(error).splitlines() or [""])[0]
            record.msg = f"{record.getMessage()} [{type(error).__name__}: {first_line}]"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


class _ClosedLoopHook:
    """sys.unraisablehook (where the writers' late callbacks report): a closed-loop error is
    one log line, the first time; anything else goes to the previous hook."""

    def __init__(self, previous):
        self.previous = previous
        self.seen = 0

    def __call__(self, unraisable):
        value = unraisable.exc_value
        if (
            isinstance(value, RuntimeError)
            and str(value) == _CLOSED_LOOP
            and _in_asyncio(unraisable.exc_traceback)
        ):
            self.seen += 1
            if self.seen == 1:
                absl_logging.warning(
                    "A background writer finished after its event loop closed (%s); "
                    "later ones are not shown.",
                    _CLOSED_LOOP,
                )
            return
        self.previous(unraisable)


def _in_asyncio(tb) -> bool:
    return any(frame.filename.startswith(asyncio.__path__[0]) for frame in traceback.extract_tb(tb))


def silence_after_error() -> None:
    """Reports still pending (tasks collected now) are logged; later ones are dropped.

    Later ones include the warnings printed as the interpreter exits: an aborted write's
    coroutines that were never awaited are collected then ("RuntimeWarning: coroutine ...
    was never awaited"), after the command's `error:` line.
    """
    gc.collect()
    logging.disable(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    warnings.simplefilter("ignore")


def quiet_library_logs() -> None:
    """Installs the filter on absl's handler and the closed-loop hook (idempotent)."""
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
        handler.addFilter(_LibraryInfoFilter())
    if not isinstance(sys.unraisablehook, _ClosedLoopHook):
        sys.unraisablehook = _ClosedLoopHook(sys.unraisablehook)
    absl_logging.set_verbosity(absl_logging.INFO)
