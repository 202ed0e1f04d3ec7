#!/usr/bin/env python
"""Train and evaluate Detectron2 models with LIP backbones.

    python tools/train_net.py --config-file configs/faster_rcnn_lip_r50.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/quick/faster_rcnn_lip_r18_shapes.yaml   # CPU
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --resume        # continue from OUTPUT_DIR

Without a GPU, ``--num-gpus N`` starts N CPU processes (gloo).
"""
import sys

from detectron2.engine import default_argument_parser, launch

from lip_det.checkpoint import LIPCheckpointer
from lip_det.engine import INPUT_ERRORS, LIPTrainer, check_inputs, setup


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = LIPTrainer.build_model(cfg)
        LIPCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return LIPTrainer.test(cfg, model)
    trainer = LIPTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    try:
        check_inputs(args)
        launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
    except INPUT_ERRORS as exc:
        sys.exit(f"error: {exc}")
