"""Atomic file writes: a file appears complete under its name, or not at all."""
import contextlib
import os
import tempfile

__all__ = ["atomic_open"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """``open(path, mode)`` for writing, through a temporary file in the same folder.

    The temporary file replaces ``path`` (``os.replace``) only when the ``with`` block ends
    without an exception; a crash or kill before that leaves any previous ``path`` intact.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; give what open() would
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
