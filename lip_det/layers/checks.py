"""One-line checks of LIP options, shared by ``MODEL.LIP`` (YACS), LazyConfig and direct Python use.

Each check takes ``key``, the option as its user wrote it (``MODEL.LIP.POOLING``,
``model.backbone.bottom_up.stages.pooling``, ``pooling``), and raises :class:`LIPConfigError`
with ``<key> = <value> is not valid; <what is allowed>``.
"""
import math

__all__ = ["LIPConfigError", "check_value", "check_choice", "is_int", "is_number"]


class LIPConfigError(ValueError):
    """A LIP option is out of range; the message names the key and the fix."""


def check_value(key, value, valid, allowed):
    """Raises the one-line error for ``key`` unless ``valid``; ``allowed`` says what is."""
    if not valid:
        raise LIPConfigError(f"{key} = {value!r} is not valid; {allowed}")


def check_choice(key, value, choices):
    """``value`` must be one of ``choices``."""
    check_value(key, value, value in choices, f"allowed values: {', '.join(map(repr, choices))}")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
