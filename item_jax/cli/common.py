"""What every command line shares: start-up, required flags, no stray arguments, and how a
run ends on an error.

The project's own errors (`item_jax.errors.ItemJaxError`: a bad config, a damaged shard, a
failed checkpoint write, a conversion that cannot be done) and the usual mistakes (a
missing or unreadable path, data that does not read) end the command with one
`error: MESSAGE` as the last thing printed and exit status 1; usage mistakes (a flag that
does not parse, a missing required flag, stray arguments) with exit status 2. The
traceback is printed only with `--verbose`. Anything else is a bug, and raises as usual.
"""

import json
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from absl import app, flags

from item_jax import allocator, logging_setup
from item_jax.errors import ItemJaxError

USAGE_EXIT_STATUS = 2


def start(argv: list[str], *required: str) -> flags.FlagValues:
    """Quiets library logs, refuses positional arguments and missing required flags."""
    logging_setup.quiet_library_logs()
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = [f"--{name}" for name in required if flags.FLAGS[name].value in (None, "")]
    if missing:
        raise app.UsageError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
        )
    return flags.FLAGS


def run(define_flags: Callable[[], None], main: Callable) -> None:
    """Defines the command's flags and runs it (the console-script entry points call this).

    First the process starts itself again on tcmalloc where it can (`item_jax/allocator.py`).
    """
    allocator.ensure_tcmalloc()
    define_flags()
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool(
            "verbose", False, "On an error, print its traceback before the `error:` line."
        )
    app.run(lambda argv: _run_main(main, argv), flags_parser=_parse_flags)


def fail(message: str, status: int = 1) -> NoReturn:
    """Ends the command with `error: MESSAGE` as the last thing printed."""
    logging_setup.silence_after_error()
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def is_user_error(error: BaseException) -> bool:
    """Whether `error` is one the person running the command can fix from its message."""
    if isinstance(error, (ItemJaxError, OSError, json.JSONDecodeError)):
        return True
    tensorflow = sys.modules.get("tensorflow")  # Only if loaded: its errors need it anyway.
    return tensorflow is not None and isinstance(
        error,
        (
            tensorflow.errors.NotFoundError,
            tensorflow.errors.PermissionDeniedError,
            tensorflow.errors.DataLossError,
        ),
    )


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{error} (--help lists the flags)", USAGE_EXIT_STATUS)
    except (AttributeError, KeyError) as error:  # ml_collections' word for an unknown field.
        field = str(error).strip("\"'")
        named = [
            arg.split("=")[0]
            for arg in argv
            if arg.startswith("--") and field in arg.split("=")[0].split(".")[1:]
        ]
        fail(
            f"{named[0] if named else '--config.' + field}: the config has no field {field!r} "
            "(item_jax/configs/defaults.py names every field)",
            USAGE_EXIT_STATUS,
        )


def _run_main(main: Callable, argv: list[str]):
    try:
        return main(argv)
    except app.UsageError as error:
        _print_traceback_if_verbose()
        fail(f"{error} (--help lists the flags)", USAGE_EXIT_STATUS)
    except Exception as error:  # pylint: disable=broad-except
        if not is_user_error(error):
            raise
        _print_traceback_if_verbose()
        fail(_message(error))


def _message(error: BaseException) -> str:
    """The error's own message; OS and TensorFlow errors also say what kind they are."""
    if isinstance(error, ItemJaxError):
        return str(error)
    text = getattr(error, "message", None) or str(error) or ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _print_traceback_if_verbose() -> None:
    if flags.FLAGS.is_parsed() and flags.FLAGS["verbose"].value:
        traceback.print_exc()
