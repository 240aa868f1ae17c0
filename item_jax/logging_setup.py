"""Console logging for the command-line tools: our progress lines, the libraries' warnings.

Orbax, JAX, TensorFlow and Apache Beam log every checkpoint write, compilation and worker
detail at INFO; a filter on the absl handler keeps their warnings and errors and drops the
rest. (Beam's worker processes log for themselves: the converter sets their level with
Beam's `--default_sdk_harness_log_level`.)
"""

import logging

from absl import logging as absl_logging

_QUIET_LIBRARY_PATHS = ("/orbax/", "/jax/_src/", "/tensorflow/", "/etils/", "/apache_beam/")


class _LibraryInfoFilter(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    return not any(part in record.pathname for part in _QUIET_LIBRARY_PATHS)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (idempotent)."""
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
  absl_logging.set_verbosity(absl_logging.INFO)
