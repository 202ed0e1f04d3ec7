"""Builders shared by tests: configs from the repo, small synthetic detection batches, the tools."""
import importlib.util
from pathlib import Path

import torch
from detectron2.structures import Boxes, Instances

from lip_det import get_lip_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SHIPPED_CONFIGS = sorted(
    str(p.relative_to(CONFIGS))
    for p in CONFIGS.rglob("*.yaml")
    if not p.name.startswith("Base-") and p.parent.name != "studies"  # study files are not Detectron2 configs
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


def detection_batch(num_images=2, height=96, width=128, num_classes=80, seed=0):
    """Random images with two ground-truth boxes each, in Detectron2's input format."""
    gen = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.tensor([[8.0, 10.0, 60.0, 70.0], [70.0, 20.0, 100.0, 44.0]]))
        inst.gt_classes = torch.randint(0, num_classes, (2,), generator=gen)
        image = torch.randint(0, 256, (3, height, width), generator=gen).float()
        batch.append({"image": image, "height": height, "width": width, "instances": inst})
    return batch
