"""lip_det alone: what a Detectron2 user who only wants the backbone imports and needs."""
import json
import os
import subprocess
import sys
import textwrap

from helpers import REPO

# What the lab imports and torch, Detectron2 and fvcore do not need to build a model (tqdm and pycocotools
# they need themselves): the plugin must not need them either.
LAB_ONLY = ("matplotlib", "scipy", "skimage", "cv2", "lip_lab")

PLUGIN_ALONE = textwrap.dedent("""
    import importlib.abc, json, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {lab_only!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}")

    sys.meta_path.insert(0, NotInstalled())
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_backbone

    datasets = set(DatasetCatalog.list())
    import lip_det

    cfg = lip_det.get_lip_cfg(opts=["MODEL.BACKBONE.NAME", "build_lip_resnet_fpn_backbone", "MODEL.DEVICE", "cpu",
                                    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
                                    "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"]])
    backbone = build_backbone(cfg)
    print(json.dumps({{
        "registered": sorted(set(DatasetCatalog.list()) - datasets),
        "outputs": sorted(backbone.output_shape()),
        "stem": type(backbone.bottom_up.stem).__name__,
    }}))
""").format(lab_only=LAB_ONLY)


def test_plugin_builds_a_backbone_without_the_lab_and_registers_no_dataset():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PLUGIN_ALONE], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"registered": [], "outputs": ["p2", "p3", "p4", "p5", "p6"], "stem": "LIPStem"}
