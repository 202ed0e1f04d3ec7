"""Training pieces shared by ``tools/train_net.py`` and the tests."""
from .checkpoint import make_saves_atomic
from .setup import INPUT_ERRORS, UsageError, check_inputs, setup
from .trainer import LIPTrainer

__all__ = ["LIPTrainer", "make_saves_atomic", "setup", "check_inputs", "INPUT_ERRORS", "UsageError"]
