#!/usr/bin/env python
"""Train and evaluate Detectron2 LazyConfig (Python) configs with LIP backbones.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_lip_R_50_FPN_100ep_LSJ.py --num-gpus 8
    python tools/lazyconfig_train_net.py --config-file configs/lazy/quick/faster_rcnn_lip_r18_shapes.py   # CPU
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model_final.pth
    python tools/lazyconfig_train_net.py --config-file ... --resume       # continue from train.output_dir

Overrides are ``key=value`` (``train.max_iter=100``). Like tools/train_net.py: AP by object size,
atomic checkpoints, ``--register-coco``, and without a GPU ``--num-gpus N`` starts N CPU processes.
"""
import sys

from detectron2.config import instantiate

from lip_lab.checkpoint import LIPCheckpointer
from lip_lab.cli import check_lazy_train_inputs, launch_training, reports_input_errors, setup_lazy
from lip_lab.engine import create_ddp_model, lazy_dataset_names, lazy_test, lazy_train


def main(args):
    """One worker process: evaluate, or train (and evaluate at the end)."""
    cfg = setup_lazy(args)
    if args.eval_only:
        model = create_ddp_model(instantiate(cfg.model).to(cfg.train.device))
        LIPCheckpointer(model, save_dir=cfg.train.output_dir).resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
        return lazy_test(cfg, model)
    lazy_train(cfg, resume=args.resume)
    return None


@reports_input_errors
def run(argv=None):
    """Checks the command line, generates the built-in datasets it needs, then launches the workers."""
    return launch_training(main, check_lazy_train_inputs, lazy_dataset_names, argv)


if __name__ == "__main__":
    sys.exit(run())
