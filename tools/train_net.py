#!/usr/bin/env python
"""Train and evaluate Detectron2 models with LIP backbones.

    python tools/train_net.py --config-file configs/faster_rcnn_lip_r50.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/quick/faster_rcnn_lip_r18_shapes.yaml   # CPU
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --resume        # continue from OUTPUT_DIR

Without a GPU, ``--num-gpus N`` starts N CPU processes (gloo).
"""
import sys

from lip_lab.checkpoint import LIPCheckpointer
from lip_lab.cli import check_train_inputs, launch_training, reports_input_errors, setup, used_datasets
from lip_lab.engine import LIPTrainer


def main(args):
    """One worker process: evaluate, or train (and evaluate at the end)."""
    cfg = setup(args)
    if args.eval_only:
        model = LIPTrainer.build_model(cfg)
        LIPCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return LIPTrainer.test(cfg, model)
    trainer = LIPTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


@reports_input_errors
def run(argv=None):
    """Checks the command line, generates the built-in datasets it needs, then launches the workers."""
    return launch_training(main, check_train_inputs, used_datasets, argv)


if __name__ == "__main__":
    sys.exit(run())
