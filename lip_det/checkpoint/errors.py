"""The one error type of weight loading and conversion."""

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A weight file cannot be read or does not fit the model; the message is one line
    that names the file's problem and the fix."""
