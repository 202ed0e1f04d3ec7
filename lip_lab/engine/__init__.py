"""Training pieces shared by the tools and the tests: YACS (:class:`LIPTrainer`) and LazyConfig runs."""
from .lazy import (
    TRAIN_DEFAULTS,
    build_lazy_trainer,
    check_lazy_lip_options,
    config_target,
    lazy_dataset_names,
    lazy_test,
    lazy_train,
    naive_sync_batchnorm,
)
from .trainer import LIPTrainer, create_ddp_model

__all__ = [
    "LIPTrainer", "create_ddp_model", "TRAIN_DEFAULTS", "build_lazy_trainer", "check_lazy_lip_options",
    "config_target", "lazy_dataset_names", "lazy_test", "lazy_train", "naive_sync_batchnorm",
]
