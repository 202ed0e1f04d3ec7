"""Test-only LIP-ResNet in the official ImageNet code's module layout.

Written from the paper and the official code's public naming, so that ``state_dict()``
has exactly the official keys (``maxpool.logit.conv.weight``,
``layer2.0.conv2.0.postprocessing.bn.weight``, ``layer2.0.downsample.lip...``, ``fc``):
the converter is checked against it. ``features(x)`` returns layer1..layer4 outputs.
"""
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

TRUNK_WIDTH = 128
COEFF = 12.0


def reference_lip2d(x, logit, kernel=3, stride=2, padding=1):
    """LIP over k x k / s windows (3x3/2, padding 1 by default): the ratio of two average poolings."""
    weight = logit.exp()
    return F.avg_pool2d(x * weight, kernel, stride, padding) / F.avg_pool2d(weight, kernel, stride, padding)


class Gate(nn.Module):
    def forward(self, z):
        return COEFF * torch.sigmoid(z)


def _logit(conv):
    """conv -> affine InstanceNorm -> gate, with the official names conv/bn/gate."""
    return nn.Sequential(
        OrderedDict(conv=conv, bn=nn.InstanceNorm2d(conv.out_channels, affine=True), gate=Gate())
    )


class StemLIP(nn.Module):
    """The official ``SimplifiedLIP``: logits from a 3x3 conv on the pooled features."""

    def __init__(self, channels):
        super().__init__()
        self.logit = _logit(nn.Conv2d(channels, channels, 3, padding=1, bias=False))

    def forward(self, x):
        return reference_lip2d(x, self.logit(x))


class HeadLIP(nn.Module):
    """The official ``BottleneckLIP``: a 1x1 head on the shared trunk gives the logits."""

    def __init__(self, channels):
        super().__init__()
        self.postprocessing = _logit(nn.Conv2d(TRUNK_WIDTH, channels, 1, bias=False))

    def forward(self, x, shared):
        return reference_lip2d(x, self.postprocessing(shared))


class SharedTrunk(nn.Module):
    """The official ``BottleneckShared``: 1x1 -> IN -> ReLU -> 3x3 -> IN -> ReLU."""

    def __init__(self, channels):
        super().__init__()
        w = TRUNK_WIDTH
        self.logit = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(channels, w, 1, bias=False), bn1=nn.InstanceNorm2d(w, affine=True),
            relu1=nn.ReLU(), conv2=nn.Conv2d(w, w, 3, padding=1, bias=False),
            bn2=nn.InstanceNorm2d(w, affine=True), relu2=nn.ReLU(),
        ))

    def forward(self, x):
        return self.logit(x)


class Bottleneck(nn.Module):
    """Bottleneck; with ``lip=True`` the stride-2 LIP variant: conv2 = (LIP, 1x1 conv)."""

    def __init__(self, in_channels, width, lip=False, shortcut=False):
        super().__init__()
        out_channels = 4 * width
        self.lip = lip
        if lip:
            self.bottleneck_shared = SharedTrunk(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        if lip:
            self.conv2 = nn.Sequential(HeadLIP(width), nn.Conv2d(width, width, 1, bias=False))
        else:
            self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if shortcut:
            modules = OrderedDict(lip=HeadLIP(in_channels)) if lip else OrderedDict()
            modules["conv"] = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            modules["bn"] = nn.BatchNorm2d(out_channels)
            self.downsample = nn.Sequential(modules)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        if self.lip:
            shared = self.bottleneck_shared(x)
            out = self.conv2[1](self.conv2[0](out, shared))
        else:
            out = self.conv2(out)
        out = self.bn3(self.conv3(F.relu(self.bn2(out))))
        if self.downsample is None:
            return F.relu(out + x)
        if self.lip:
            residual = self.downsample.lip(x, shared)
            residual = self.downsample.bn(self.downsample.conv(residual))
        else:
            residual = self.downsample(x)
        return F.relu(out + residual)


class OfficialLIPResNet(nn.Module):
    """LIP-ResNet-50/101/152 with the official names; ``blocks`` per layer, e.g. (3, 4, 6, 3)."""

    def __init__(self, blocks=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = StemLIP(64)
        in_channels = 64
        for index, count in enumerate(blocks):
            width = 64 * 2**index
            layer = [Bottleneck(in_channels, width, lip=index > 0, shortcut=True)]
            layer += [Bottleneck(4 * width, width) for _ in range(count - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
            in_channels = 4 * width
        self.fc = nn.Linear(in_channels, num_classes)

    def features(self, x):
        """(N, 3, H, W) -> [layer1 (N, 256, H/4, W/4), ..., layer4 (N, 2048, H/32, W/32)]."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        outputs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


def randomize_(model, seed=0):
    """Random weights everywhere, BN statistics and IN affine included; LIP heads non-zero.

    Scales keep activations O(1) through 50+ layers, so a 1e-5 comparison is meaningful.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(shape, low, high):
        return torch.rand(shape, generator=gen) * (high - low) + low

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)
            elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                module.weight.copy_(rand(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(rand(module.bias.shape, -0.5, 0.5))
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.copy_(rand(module.running_mean.shape, -0.2, 0.2))
                    module.running_var.copy_(rand(module.running_var.shape, 0.5, 2.0))
                    module.num_batches_tracked.fill_(12345)
            elif isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.01, generator=gen)
                module.bias.zero_()
    return model
