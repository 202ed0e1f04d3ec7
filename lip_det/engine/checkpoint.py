"""Checkpoints that are never left truncated."""
from ..utils.atomic import atomic_open

__all__ = ["make_saves_atomic"]


class _AtomicWrites:
    """Wraps a path manager: files opened for writing go through :func:`atomic_open`."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def open(self, path, mode="r", **kwargs):
        if any(flag in mode for flag in "wax+") and "://" not in str(path):
            return atomic_open(path, mode, **kwargs)
        return self._path_manager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._path_manager, name)


def make_saves_atomic(checkpointer):
    """Makes ``checkpointer.save`` atomic (in place) and returns it.

    fvcore's ``Checkpointer.save`` streams ``torch.save`` into ``<name>.pth`` and then
    rewrites ``last_checkpoint``: a kill in between leaves a truncated file, possibly under
    the name a resume will read. Both writes now land through a temporary file + ``os.replace``.
    """
    if not isinstance(checkpointer.path_manager, _AtomicWrites):
        checkpointer.path_manager = _AtomicWrites(checkpointer.path_manager)
    return checkpointer
