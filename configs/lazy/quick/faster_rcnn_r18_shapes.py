"""Vanilla ResNet-18-FPN Faster R-CNN on LIP-Shapes, CPU, from scratch: configs/quick/faster_rcnn_r18_shapes.yaml
as a LazyConfig (same model, data, schedule and seed: same losses), the baseline twin of
faster_rcnn_lip_r18_shapes.py. See configs/quick/Base-Shapes-RCNN-FPN.yaml for the choices."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from ..common.faster_rcnn_fpn import dataloader, model, optimizer, train

bottom_up = model.backbone.bottom_up
bottom_up.stages.depth = 18
bottom_up.stages.pop("stride_in_1x1")  # basic blocks have no 1x1 conv
bottom_up.stem.norm = bottom_up.stages.norm = "BN"
bottom_up.freeze_at = 0
model.backbone.out_channels = 64
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
model.proposal_generator.pre_nms_topk = (1000, 500)  # (train, test)
model.proposal_generator.post_nms_topk = (500, 300)
model.roi_heads.num_classes = 4
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
model.roi_heads.box_head.fc_dims = [512, 512]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=512)

dataloader.train.dataset.names = "lip_shapes_train"
dataloader.test.dataset.names = "lip_shapes_val"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(192,), max_size=192, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=192, max_size=192)]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = dataloader.test.num_workers = 1

optimizer.lr = 0.02
train.max_iter = 400
lr_multiplier = L(WarmupParamScheduler)(  # SOLVER.STEPS (300, 370), GAMMA 0.1, WARMUP_ITERS 50
    scheduler=L(MultiStepParamScheduler)(
        values=[0.1**k for k in range(3)], milestones=[300, 370], num_updates=train.max_iter
    ),
    warmup_length=50 / train.max_iter,
    warmup_factor=0.001,
)
train.checkpointer.period = 100
train.seed = 42
train.device = "cpu"  # train.device=cuda on a GPU machine
train.output_dir = "./output/lazy/quick/faster_rcnn_r18_shapes"
