"""Converting ImageNet ResNet / LIP-ResNet checkpoints to Detectron2 trunk checkpoints."""
from dataclasses import dataclass

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from ..config import get_lip_cfg
from ..modeling.backbone.lip_resnet import NUM_BLOCKS_PER_STAGE, build_lip_resnet_backbone
from .errors import CheckpointError
from .files import read_state_dict, save_d2_checkpoint
from .loading import match_trunk_weights
from .names import CAFFE2, OFFICIAL_LIP, TORCHVISION, detect_layout, infer_depth, rename_to_trunk

__all__ = [
    "ConversionResult",
    "convert_official_lip_resnet",
    "convert_torchvision_resnet",
    "TORCHVISION_PREPROCESSING",
]

TORCHVISION_PREPROCESSING = {
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
    "INPUT.FORMAT": "RGB",
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}
"""What torchvision and official LIP-ResNet weights need: both were trained on RGB in
[0, 1] normalised by mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) (x255 here, as
Detectron2 reads 0-255 pixels), with the stride of a bottleneck in its 3x3 conv."""

_TOOL_FOR = {
    OFFICIAL_LIP: "tools/convert_lip_resnet_to_d2.py",
    TORCHVISION: "tools/convert_torchvision_to_d2.py",
}


@dataclass
class ConversionResult:
    """What a conversion wrote: depth, tensor counts, and the config it needs."""

    source: str
    output: str
    layout: str
    depth: int
    num_tensors: int
    dropped: list

    def summary(self):
        name = f"{'LIP-' if self.layout == OFFICIAL_LIP else ''}ResNet-{self.depth}"
        settings = "\n".join(f"  {k}: {v}" for k, v in TORCHVISION_PREPROCESSING.items())
        return (
            f"Wrote {self.output}: {self.num_tensors} tensors of {name} ({self.layout} "
            f"{self.source}), every one matched to the Detectron2 trunk; dropped "
            f"{len(self.dropped)} (classifier and BN step counters).\n"
            f"Use it with MODEL.RESNETS.DEPTH: {self.depth} and these input settings "
            f"(the shipped configs have them):\n{settings}"
        )


def _trunk_model_state(depth, lip):
    """State dict of the FrozenBN trunk the converted file must fill exactly."""
    opts = ["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN"]
    opts += ["MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"]]
    if depth < 50:
        opts += ["MODEL.RESNETS.RES2_OUT_CHANNELS", 64]
    cfg = get_lip_cfg(None, opts)
    builder = build_lip_resnet_backbone if lip else build_resnet_backbone
    return builder(cfg, ShapeSpec(channels=3)).state_dict()


def _convert(source, output, expected_layout, lip):
    state, author = read_state_dict(source)
    layout = CAFFE2 if author == "Caffe2" else detect_layout(state)
    if layout != expected_layout:
        tool = _TOOL_FOR.get(layout, "lip_det.checkpoint.LIPCheckpointer (it reads it directly)")
        raise CheckpointError(
            f"{source} holds {layout or 'no known ResNet'} weights; this converter reads "
            f"{expected_layout} checkpoints: use {tool}"
        )
    trunk, _ = rename_to_trunk(state, layout)
    depth = infer_depth(trunk, NUM_BLOCKS_PER_STAGE)
    load = match_trunk_weights(_trunk_model_state(depth, lip), state, source, author)
    if load.new:
        raise CheckpointError(
            f"{source} lacks {len(load.new)} tensors of a {layout} ResNet-{depth}: "
            f"{', '.join(sorted(load.new)[:4])}; is the file complete?"
        )
    save_d2_checkpoint(output, load.state_dict, f"lip_det: {layout}-{depth} ImageNet weights")
    return ConversionResult(str(source), str(output), layout, depth, len(load.state_dict), load.dropped)


def convert_official_lip_resnet(source, output):
    """Official LIP-ResNet ImageNet checkpoint -> Detectron2 file for ``build_lip_resnet_backbone``.

    Every tensor of the file but ``fc`` (and BN ``num_batches_tracked``) is written under
    its trunk name, and the written trunk fills a LIP-ResNet of the same depth exactly.
    """
    return _convert(source, output, OFFICIAL_LIP, lip=True)


def convert_torchvision_resnet(source, output):
    """torchvision ResNet-{18,34,50,101,152} checkpoint -> Detectron2 file for ``build_resnet_backbone``."""
    return _convert(source, output, TORCHVISION, lip=False)
