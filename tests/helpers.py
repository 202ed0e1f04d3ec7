"""Builders shared by tests: configs from the repo, small synthetic detection batches, the tools."""
import importlib.util
from pathlib import Path

import torch
from detectron2.structures import BitMasks, Boxes, Instances

from lip_det import get_lip_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUICK_VANILLA = "configs/quick/faster_rcnn_r18_shapes.yaml"
QUICK_LIP = "configs/quick/faster_rcnn_lip_r18_shapes.yaml"
SHIPPED_CONFIGS = sorted(
    str(p.relative_to(CONFIGS))
    for p in CONFIGS.rglob("*.yaml")
    if not p.name.startswith("Base-") and p.parent.name != "studies"  # study files are not Detectron2 configs
)
LAZY_CONFIGS = sorted(  # configs/lazy/common/ holds what the configs import, not configs
    str(p.relative_to(CONFIGS)) for p in (CONFIGS / "lazy").rglob("*.py") if p.parent.name != "common"
)


def load_tool(name):
    """``tools/<name>.py`` as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repo_cfg(name, *opts):
    """A shipped config on CPU, without weights."""
    return get_lip_cfg(CONFIGS / name, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])


def detection_batch(num_images=2, height=96, width=128, num_classes=80, seed=0, masks=False):
    """Random images with two ground-truth boxes each (and, with ``masks``, an elliptic mask in
    each box), in Detectron2's input format."""
    gen = torch.Generator().manual_seed(seed)
    batch = []
    boxes = torch.tensor([[8.0, 10.0, 60.0, 70.0], [70.0, 20.0, 100.0, 44.0]])
    for _ in range(num_images):
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.randint(0, num_classes, (2,), generator=gen)
        if masks:
            inst.gt_masks = BitMasks(torch.stack([_ellipse(box, height, width) for box in boxes]))
        image = torch.randint(0, 256, (3, height, width), generator=gen).float()
        batch.append({"image": image, "height": height, "width": width, "instances": inst})
    return batch


def _ellipse(box, height, width):
    """(height, width) bool mask of the ellipse inscribed in ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box.tolist()
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return ((xs - (x0 + x1) / 2) / ((x1 - x0) / 2)) ** 2 + ((ys - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2 <= 1
