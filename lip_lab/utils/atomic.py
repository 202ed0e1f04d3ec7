"""Atomic file writes: a file appears complete under its name, or not at all."""
import contextlib
import os
import tempfile

__all__ = ["atomic_path", "atomic_open"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path in ``path``'s folder to write ``path`` through (for writers that take a name).

    When the ``with`` block ends without an exception, the file written there is synced and
    replaces ``path`` (``os.replace``); otherwise it is removed and any previous ``path`` is intact.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give what open() would
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """``open(path, mode)`` for writing, through :func:`atomic_path`: ``path`` appears complete when
    the ``with`` block ends without an exception; a crash or kill before that leaves any previous
    ``path`` intact."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
