"""What every command line shares: start-up, required flags, no stray arguments."""

from typing import Callable

from absl import app, flags

from item_jax import allocator, logging_setup


def start(argv: list[str], *required: str) -> flags.FlagValues:
  """Quiets library logs, refuses positional arguments and missing required flags."""
  logging_setup.quiet_library_logs()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  missing = [f"--{name}" for name in required if flags.FLAGS[name].value in (None, "")]
  if missing:
    raise app.UsageError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                         "required")
  return flags.FLAGS


def run(define_flags: Callable[[], None], main: Callable) -> None:
  """Defines the command's flags and runs it (the console-script entry points call this).

  First the process starts itself again on tcmalloc where it can (`item_jax/allocator.py`).
  """
  allocator.ensure_tcmalloc()
  define_flags()
  app.run(main)
