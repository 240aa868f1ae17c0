"""The base of the project's own errors: a message that says what went wrong and the fix.

Every command line prints such an error as `error: MESSAGE` and exits 1, without a
traceback unless `--verbose` is given (`item_jax/cli/common.py`). The errors keep their
usual Python bases as well (a `ConfigError` is a `ValueError`), so code that catches
those still does.
"""


class ItemJaxError(Exception):
    """An error whose message is meant for the person running the command."""
