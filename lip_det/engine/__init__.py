"""Training pieces shared by the tools and the tests."""
from .trainer import LIPTrainer, create_ddp_model

__all__ = ["LIPTrainer", "create_ddp_model"]
