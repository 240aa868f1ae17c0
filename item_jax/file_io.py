"""File operations on local paths and on any filesystem TensorFlow reads (gs://, s3://, ...).

A path with a scheme (`gs://bucket/catalog/manifest.jsonl`) goes through `tf.io.gfile`, so a
converter run on a cluster reads and writes object stores that only the workers can reach;
a plain path goes through `os` and `open`, exactly as before, without importing
TensorFlow. Errors are the built-in ones either way: `FileNotFoundError` for a missing
file, `OSError` for one that cannot be read. The tests use TensorFlow's in-process
`ram://` filesystem for the remote branch.

Object stores have no directory rename: `move_file` moves one file (a copy and a delete
on GCS), and callers that publish a directory move its files one by one.
"""

import glob as local_glob
import os
import shutil
from typing import IO

_SCHEME_SEPARATOR = "://"


def is_remote(path: str) -> bool:
    """True for a URL-style path (`gs://...`), which `tf.io.gfile` handles."""
    return _SCHEME_SEPARATOR in str(path)


def _gfile():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (remote paths only)

    return tf.io.gfile


def _tf_errors():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.errors


def absolute(path: str) -> str:
    """`os.path.abspath` for a local path; a URL unchanged."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
    if is_remote(path):
        return _gfile().exists(path) and not _gfile().isdir(path)
    return os.path.isfile(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
    """The names in a directory (no trailing slashes), sorted."""
    if is_remote(path):
        return sorted(name.rstrip("/") for name in _gfile().listdir(path))
    return sorted(os.listdir(path))


def glob(pattern: str) -> list[str]:
    """The paths a pattern matches, sorted."""
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    return sorted(local_glob.glob(pattern))


def getsize(path: str) -> int:
    return _gfile().stat(path).length if is_remote(path) else os.path.getsize(path)


def open_file(path: str, mode: str = "r", encoding: str | None = "utf-8") -> IO:
    """`open` for a local path (text modes in `encoding`), `tf.io.gfile.GFile` for a URL.

    A missing remote file raises FileNotFoundError on open, as a local one does.
    """
    if not is_remote(path):
        if "b" in mode:
            return open(path, mode)  # pylint: disable=unspecified-encoding
        return open(path, mode, encoding=encoding)
    if "r" in mode and not _gfile().exists(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    try:
        return _gfile().GFile(path, mode)
    except _tf_errors().OpError as error:
        raise OSError(f"Cannot open {path!r}: {error.message}") from error


def read_bytes(path: str) -> bytes:
    """A whole file's bytes; remote read errors become OSError."""
    if not is_remote(path):
        with open(path, "rb") as stream:
            return stream.read()
    with open_file(path, "rb") as stream:
        try:
            return stream.read()
        except _tf_errors().OpError as error:
            raise OSError(f"Cannot read {path!r}: {error.message}") from error


def move_file(source: str, destination: str) -> None:
    """Moves one file, replacing `destination`."""
    if is_remote(source) or is_remote(destination):
        _gfile().rename(source, destination, overwrite=True)
    else:
        os.replace(source, destination)


def remove_file(path: str) -> None:
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def remove_tree(path: str) -> None:
    """Removes a directory and everything in it; nothing when it does not exist."""
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().rmtree(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
