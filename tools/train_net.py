#!/usr/bin/env python
"""Train and evaluate Detectron2 models with LIP backbones.

    python tools/train_net.py --config-file configs/faster_rcnn_lip_r50.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/quick/faster_rcnn_lip_r18_shapes.yaml   # CPU
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --resume        # continue from OUTPUT_DIR

Without a GPU, ``--num-gpus N`` starts N CPU processes (gloo).
"""
import sys

from detectron2.engine import launch

from lip_det.checkpoint import LIPCheckpointer
from lip_det.cli import check_train_inputs, reports_input_errors, setup, train_argument_parser, used_datasets
from lip_det.data import prepare_datasets
from lip_det.engine import LIPTrainer


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
    args = train_argument_parser().parse_args(argv)
    cfg = check_train_inputs(args)
    prepare_datasets(used_datasets(cfg, args.eval_only))
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(run())
