"""Test-only LIP-DenseNet-121 in the official ImageNet code's module layout.

Written from the paper and the official code's public naming (``imagenet/lip_densenet.py``), so that
``state_dict()`` has exactly the official keys (``features.pool0.logit.conv1.weight``,
``features.denseblock1.denselayer1.norm1.weight``, ``features.transition1.pool.logit.conv3.weight``,
``classifier``): the converter is checked against it. Its stem pools with LIP over 3x3/2 windows
(logits: conv 3x3 -> IN -> gate), each transition with LIP over 2x2/2 windows (logits: the
bottleneck conv 1x1 -> IN -> ReLU -> conv 3x3 -> IN -> ReLU -> conv 1x1 -> IN -> gate).
"""
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from official_lip_resnet_reference import TRUNK_WIDTH, Gate, reference_lip2d

GROWTH_RATE = 32
BLOCKS = (6, 12, 24, 16)
STEM_CHANNELS = 64


def _instance_norm(channels):
    return nn.InstanceNorm2d(channels, affine=True)


class StemLIP(nn.Module):
    """The official ``SimplifiedLIP`` of LIP-DenseNet: logits from a 3x3 conv on the pooled features."""

    def __init__(self, channels):
        super().__init__()
        self.logit = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(channels, channels, 3, padding=1, bias=False), bn1=_instance_norm(channels), gate=Gate(),
        ))

    def forward(self, x):
        return reference_lip2d(x, self.logit(x))


class TransitionLIP(nn.Module):
    """The official ``BottleneckLIP`` of LIP-DenseNet: the whole bottleneck logit module on the pooled features."""

    def __init__(self, channels):
        super().__init__()
        w = TRUNK_WIDTH
        self.logit = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(channels, w, 1, bias=False), bn1=_instance_norm(w), relu1=nn.ReLU(),
            conv2=nn.Conv2d(w, w, 3, padding=1, bias=False), bn2=_instance_norm(w), relu2=nn.ReLU(),
            conv3=nn.Conv2d(w, channels, 1, bias=False), bn3=_instance_norm(channels), gate=Gate(),
        ))

    def forward(self, x):
        return reference_lip2d(x, self.logit(x), 2, 2, 0)


class DenseLayer(nn.Sequential):
    """BN -> ReLU -> conv 1x1 (4k) -> BN -> ReLU -> conv 3x3 (k); the input and the k new channels, concatenated."""

    def __init__(self, channels):
        width = 4 * GROWTH_RATE
        super().__init__(OrderedDict(
            norm1=nn.BatchNorm2d(channels), relu1=nn.ReLU(), conv1=nn.Conv2d(channels, width, 1, bias=False),
            norm2=nn.BatchNorm2d(width), relu2=nn.ReLU(), conv2=nn.Conv2d(width, GROWTH_RATE, 3, padding=1, bias=False),
        ))

    def forward(self, x):
        return torch.cat([x, super().forward(x)], 1)


def transition(channels):
    """BN -> ReLU -> conv 1x1 (half the channels) -> LIP 2x2/2."""
    return nn.Sequential(OrderedDict(
        norm=nn.BatchNorm2d(channels), relu=nn.ReLU(), conv=nn.Conv2d(channels, channels // 2, 1, bias=False),
        pool=TransitionLIP(channels // 2),
    ))


class OfficialLIPDenseNet(nn.Module):
    """LIP-DenseNet-121 with the official names."""

    def __init__(self, num_classes=1000):
        super().__init__()
        channels = STEM_CHANNELS
        self.features = nn.Sequential(OrderedDict(
            conv0=nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False), norm0=nn.BatchNorm2d(channels),
            relu0=nn.ReLU(), pool0=StemLIP(channels),
        ))
        for index, num_layers in enumerate(BLOCKS):
            block = nn.Sequential(OrderedDict(
                (f"denselayer{i + 1}", DenseLayer(channels + i * GROWTH_RATE)) for i in range(num_layers)
            ))
            self.features.add_module(f"denseblock{index + 1}", block)
            channels += num_layers * GROWTH_RATE
            if index < len(BLOCKS) - 1:
                self.features.add_module(f"transition{index + 1}", transition(channels))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        features = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(features, 1).flatten(1))


def densenet_stage_outputs(features, x):
    """What a DenseNet's stages res2..res5 hold, from its ``features`` (official LIP or torchvision layout).

    Each dense block's output after the BN + ReLU the next layer applies: a transition's ``norm`` and
    ``relu`` (the transition then runs its ``conv`` and ``pool`` on it), or ``norm5`` and the classifier's ReLU.
    Shapes: (N, 3, H, W) -> [(N, 256, H/4, W/4), (N, 512, H/8, W/8), (N, 1024, H/16, W/16), (N, 1024, H/32, W/32)].
    """
    outputs = []
    for name, module in features.named_children():
        if name.startswith("transition"):
            x = F.relu(module.norm(x))
            outputs.append(x)
            x = module.pool(module.conv(x))
        else:
            x = module(x)
    return outputs + [F.relu(x)]
