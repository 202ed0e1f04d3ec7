"""Shipped configs, model-zoo configs turned LIP, and MODEL.LIP validation."""
import math

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import lip_det
from lip_det import LIPConfigError, add_lip_config, get_lip_cfg
from lip_lab.cli import load_lazy_config
from lip_lab.engine import check_lazy_lip_options
from lip_det.layers import MODEL_LIP_KEYS, DownsampleSpec

from helpers import CONFIGS, SHIPPED_CONFIGS, detection_batch, repo_cfg

LIP_TWINS = [(name, name.replace("_lip", "")) for name in SHIPPED_CONFIGS if "_lip_" in name]


def test_lip_and_vanilla_configs_come_in_twins():
    lip = {name for name in SHIPPED_CONFIGS if "_lip_" in name}
    assert lip and {name.replace("_lip", "") for name in lip} == set(SHIPPED_CONFIGS) - lip


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_config_trains_one_step_and_infers(name):
    torch.manual_seed(0)
    cfg = repo_cfg(name, "MODEL.BACKBONE.FREEZE_AT", 0)
    model = build_model(cfg)
    model.train()
    num_classes = cfg.MODEL.RETINANET.NUM_CLASSES if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    with EventStorage(0):
        losses = model(detection_batch(num_classes=num_classes, masks=cfg.MODEL.MASK_ON))
    assert ("loss_mask" in losses) == cfg.MODEL.MASK_ON
    total = sum(losses.values())
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        outputs = model(detection_batch(num_images=1))
    assert outputs[0]["instances"].image_size == (96, 128)
    assert outputs[0]["instances"].has("pred_masks") == cfg.MODEL.MASK_ON


@pytest.mark.parametrize("lip_name,vanilla_name", [
    pytest.param(*twin, marks=pytest.mark.slow if "r101" in twin[0] else ()) for twin in LIP_TWINS
])
def test_lip_config_matches_its_twin_in_everything_but_the_backbone(lip_name, vanilla_name):
    lip_cfg, vanilla_cfg = repo_cfg(lip_name), repo_cfg(vanilla_name)
    assert "lip" in lip_cfg.MODEL.BACKBONE.NAME and "lip" not in vanilla_cfg.MODEL.BACKBONE.NAME
    for key in ("SOLVER", "INPUT", "DATASETS", "TEST"):
        assert lip_cfg[key] == vanilla_cfg[key], key
    for key in ("PIXEL_MEAN", "PIXEL_STD", "RESNETS", "FPN", "ANCHOR_GENERATOR"):
        assert lip_cfg.MODEL[key] == vanilla_cfg.MODEL[key], key
    lip_model, vanilla_model = build_model(lip_cfg), build_model(vanilla_cfg)
    assert lip_model.backbone.output_shape() == vanilla_model.backbone.output_shape()


@pytest.mark.parametrize("zoo_config,builder", [
    ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", "build_lip_resnet_fpn_backbone"),
    pytest.param("COCO-Detection/retinanet_R_50_FPN_1x.yaml", "build_retinanet_lip_resnet_fpn_backbone",
                 marks=pytest.mark.slow),
])
def test_stock_model_zoo_config_becomes_lip_with_two_lines(zoo_config, builder):
    cfg = get_cfg()
    add_lip_config(cfg)                                      # line 1
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.BACKBONE.NAME = builder                        # line 2
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert type(model.backbone.bottom_up.stem).__name__ == "LIPStem"
    model.train()
    with EventStorage(0):
        losses = model(detection_batch())
    assert all(math.isfinite(v.item()) for v in losses.values())


@pytest.mark.parametrize("key,value,allowed", [
    ("MODEL.LIP.LOGIT_MODULE", "dense", "'bottleneck', 'projection'"),
    ("MODEL.LIP.LOGIT_NORM", "BN", "'IN', 'GN', ''"),
    ("MODEL.LIP.IMPL", "cuda", "'auto'"),
    ("MODEL.LIP.STEM", "yes", "True, False"),
    ("MODEL.LIP.STAGES", ["res2"], "'res3', 'res4', 'res5'"),
    ("MODEL.LIP.STAGES", ["res3", "res3"], "distinct"),
    ("MODEL.LIP.LOGIT_WIDTH", 0, "positive integer"),
    ("MODEL.LIP.COEFF", -1.0, "(0, 30]"),
])
def test_bad_values_give_one_line_error_naming_key_and_allowed(key, value, allowed):
    cfg = get_lip_cfg()
    cfg.MODEL.LIP[key.rsplit(".", 1)[1]] = value  # as code (not YAML) could set it
    with pytest.raises(LIPConfigError) as err:
        lip_det.validate_lip_config(cfg)
    message = str(err.value)
    assert "\n" not in message and message.startswith(key) and allowed in message


@pytest.mark.parametrize("name,value", [
    ("pooling", "median"), ("logit_module", "dense"), ("logit_width", 0), ("logit_norm", "BN"), ("coeff", 31.0),
    ("impl", "cuda"), ("recompute", "yes"), ("lp_p", 0.5), ("s3pool_grid", 3), ("blur_filter", 9),
])
def test_yacs_lazyconfig_and_python_reject_a_lip_value_alike(name, value):
    """One check, three spellings of the key: MODEL.LIP.POOLING, model.backbone...stages.pooling, pooling."""
    yacs = get_lip_cfg()
    yacs.MODEL.LIP[MODEL_LIP_KEYS[name]] = value
    with pytest.raises(LIPConfigError) as yacs_err:
        lip_det.validate_lip_config(yacs)
    lazy = load_lazy_config(str(CONFIGS / "lazy/quick/faster_rcnn_lip_r18_shapes.py"))
    lazy.model.backbone.bottom_up.stages[name] = value
    with pytest.raises(LIPConfigError) as lazy_err:
        check_lazy_lip_options(lazy)
    with pytest.raises(ValueError) as python_err:
        DownsampleSpec(**{name: value})
    key = f"MODEL.LIP.{MODEL_LIP_KEYS[name]}"
    assert str(yacs_err.value).startswith(f"{key} = {value!r} is not valid; ") and "\n" not in str(yacs_err.value)
    assert str(lazy_err.value) == str(yacs_err.value).replace(key, f"model.backbone.bottom_up.stages.{name}", 1)
    assert str(python_err.value) == str(yacs_err.value).replace(key, name, 1)


def test_bad_value_is_caught_when_loading_and_when_building():
    with pytest.raises(LIPConfigError, match="MODEL.LIP.LOGIT_NORM"):
        repo_cfg("faster_rcnn_lip_r50.yaml", "MODEL.LIP.LOGIT_NORM", "BN")
    cfg = repo_cfg("faster_rcnn_lip_r50.yaml")
    cfg.MODEL.LIP.LOGIT_NORM = "BN"
    with pytest.raises(LIPConfigError, match="MODEL.LIP.LOGIT_NORM"):
        build_model(cfg)


def test_dilated_res5_cannot_take_lip():
    with pytest.raises(LIPConfigError, match="RES5_DILATION"):
        get_lip_cfg(opts=["MODEL.RESNETS.RES5_DILATION", 2])


def test_missing_add_lip_config_is_explained():
    cfg = get_cfg()
    with pytest.raises(LIPConfigError, match="add_lip_config"):
        lip_det.validate_lip_config(cfg)
