"""The error of a bad command line or input file; the tools print it as one line (:mod:`lip_lab.cli`)."""

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A missing file, an unknown config key or contradictory flags; the message names the fix."""
