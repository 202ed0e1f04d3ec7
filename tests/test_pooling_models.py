"""Every MODEL.LIP.POOLING operator in real detectors: quick and stock model-zoo configs,
float32 and bfloat16 training steps, inference, parameters, seeds and importance maps."""
import math

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage

from lip_det import add_lip_config, get_lip_cfg
from lip_lab.demo import ImportanceRecorder, render_importance_grid
from lip_det.layers import LEARNED_OPERATORS, POOLING_OPERATORS, POOLINGS, ConvLogit, DownsampleSpec
from lip_lab.utils.complexity import count_parameters

from helpers import detection_batch, repo_cfg

QUICK = "quick/faster_rcnn_lip_r18_shapes.yaml"
# P5 2x3, P6 1x2, RetinaNet's P7 1x1. (64 x 64 makes the stock P6 1x1, and CPU bfloat16
# backward of the stock stride-2 P7 conv on it now and then returns non-finite weight grads.)
HEIGHT, WIDTH = 64, 96
SMALL_HEADS = ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 100]
SLOT_TITLES = ["stem", "res3", "res3 shortcut", "res4", "res4 shortcut", "res5", "res5 shortcut"]


def train_both_precisions_and_infer(cfg):
    """One float32 and one bfloat16-autocast training step (finite losses, finite backbone
    gradients), then inference on the same images."""
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = detection_batch(num_images=1, height=HEIGHT, width=WIDTH, num_classes=4)
    model.train()
    for autocast in (False, True):
        model.zero_grad(set_to_none=True)
        with EventStorage(0), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses = model(batch)
        assert all(math.isfinite(v.item()) for v in losses.values()), (autocast, losses)
        sum(losses.values()).backward()
        grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    assert outputs[0]["instances"].image_size == (HEIGHT, WIDTH)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("pooling", POOLINGS)
def test_quick_config_with_top_block_trains_in_both_precisions_and_infers(pooling):
    cfg = repo_cfg(QUICK, "MODEL.LIP.POOLING", pooling, "MODEL.LIP.FPN_TOP_BLOCK", True, *SMALL_HEADS)
    model = train_both_precisions_and_infer(cfg)
    spec = DownsampleSpec.from_config(cfg)
    for slot in (model.backbone.bottom_up.stem.lip, model.backbone.top_block.p6_lip):
        assert type(slot) is type(spec.single_pool(64))


@pytest.mark.slow
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("zoo_config,builder", [
    ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", "build_lip_resnet_fpn_backbone"),
    ("COCO-Detection/retinanet_R_50_FPN_1x.yaml", "build_retinanet_lip_resnet_fpn_backbone"),
])
def test_stock_model_zoo_config_takes_every_operator(zoo_config, builder, pooling):
    cfg = get_cfg()
    add_lip_config(cfg)                                      # line 1
    cfg.merge_from_file(model_zoo.get_config_file(zoo_config))
    cfg.MODEL.BACKBONE.NAME = builder                        # line 2
    cfg.MODEL.LIP.POOLING = pooling                          # the ablation's one word
    # CPU test sizes: ResNet-18, small images and samplers. LIP's InstanceNorm logits cannot
    # train on the 1x1 top levels of a 64 px image, so LIP keeps the stock top block here.
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                         "MODEL.LIP.FPN_TOP_BLOCK", pooling != "lip", *SMALL_HEADS])
    train_both_precisions_and_infer(cfg)


def trunk(pooling, *opts):
    return build_backbone(get_lip_cfg(opts=[
        "MODEL.BACKBONE.NAME", "build_lip_resnet_backbone", "MODEL.LIP.POOLING", pooling,
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.NORM", "BN",
        "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.RESNETS.OUT_FEATURES", ["stem", "res2", "res3", "res4", "res5"],
        *opts,
    ])).eval()


def test_parameter_free_operators_share_one_state_dict_and_learned_ones_add_to_it():
    vanilla = trunk("lip", "MODEL.BACKBONE.NAME", "build_resnet_backbone").state_dict()
    keys = {name: set(trunk(name).state_dict()) for name in POOLING_OPERATORS}
    assert all(k == keys["max"] for k in keys.values())
    assert keys["max"] == set(vanilla)  # ResNet-18: every conv keeps its vanilla name and shape
    assert not any("lip" in k or "logit" in k for k in keys["max"])
    parameter_free = count_parameters(trunk("max"))
    assert parameter_free == count_parameters(trunk("blur"))
    for name in ("lip", *LEARNED_OPERATORS):
        learned = trunk(name)
        assert count_parameters(learned) > parameter_free, name
        assert keys["max"] < set(learned.state_dict()), name
        added = set(learned.state_dict()) - keys["max"]
        assert all(".lip." in k or ".shortcut_lip." in k or "logit_trunk" in k for k in added), name


def test_max_stem_is_the_vanilla_stem():
    vanilla = trunk("lip", "MODEL.BACKBONE.NAME", "build_resnet_backbone")
    with_max = trunk("max")
    with_max.load_state_dict(vanilla.state_dict())
    x = torch.randn(1, 3, 45, 38)
    with torch.no_grad():
        torch.testing.assert_close(with_max(x)["stem"], vanilla(x)["stem"])


def test_avg_network_equals_the_zero_initialised_lip_network():
    lip, avg = trunk("lip"), trunk("avg")
    avg.load_state_dict(lip.state_dict(), strict=False)  # every conv; LIP's logit modules stay out
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        got, want = avg(x), lip(x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("pooling", ["stochastic", "s3pool"])
def test_stochastic_operators_follow_the_seed_in_training_only(pooling):
    model = trunk(pooling)
    x = torch.randn(1, 3, 64, 96)
    runs = {}
    for mode, seed in [("train", 0), ("train", 0), ("train", 1), ("eval", 0), ("eval", 1)]:
        torch.manual_seed(seed)
        model.train(mode == "train")
        with torch.no_grad():
            runs.setdefault((mode, seed), []).append(model(x)["res5"])
    assert torch.equal(*runs["train", 0])
    assert not torch.equal(runs["train", 0][0], runs["train", 1][0])
    assert torch.equal(runs["eval", 0][0], runs["eval", 1][0])


# ---- importance maps ---------------------------------------------------------------------------

def _plane_share(w):
    return w / w.amax((1, 2), keepdim=True).clamp_min(1e-30)


IMPORTANCE_FORMULAS = {  # one image's pool input (C, H, W) -> its (H, W) map
    "softpool": lambda x: torch.exp(x - x.amax((1, 2), keepdim=True)).mean(0),
    "lp": lambda x: _plane_share(x.abs()).pow(3.0).mean(0),
    "l2": lambda x: _plane_share(x.abs()).pow(2.0).mean(0),
    "stochastic": lambda x: _plane_share(x.relu()).mean(0),
}


@pytest.mark.parametrize("pooling", ["lip", *IMPORTANCE_FORMULAS])
def test_importance_maps_cover_every_slot_of_weighted_operators(pooling):
    cfg = repo_cfg(QUICK, "MODEL.LIP.POOLING", pooling)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for module in model.modules():
        if isinstance(module, ConvLogit):  # LIP: logits with structure
            torch.nn.init.normal_(module.conv.weight, std=0.5)
    inputs = {}
    res4 = model.backbone.bottom_up.res4[0].lip
    res4.register_forward_hook(lambda module, args, out: inputs.__setitem__("res4", args[0][0]))
    batch = detection_batch(num_images=1, height=HEIGHT, width=WIDTH)
    with ImportanceRecorder(model) as recorder, torch.no_grad():
        model(batch)
    assert list(recorder.maps) == SLOT_TITLES
    for title, stride in [("stem", 2), ("res3", 4), ("res4", 8), ("res5", 16)]:
        assert recorder.maps[title].shape == (HEIGHT // stride, WIDTH // stride)
        assert recorder.maps[title].std() > 0
    if pooling in IMPORTANCE_FORMULAS:
        want = IMPORTANCE_FORMULAS[pooling](inputs["res4"].double()).numpy()
        np.testing.assert_allclose(recorder.maps["res4"], want, rtol=1e-4, atol=1e-6)
    # Lp and stochastic maps hold zeros (post-ReLU): the captions must still render.
    grid = render_importance_grid(np.zeros((HEIGHT, WIDTH, 3), np.uint8), recorder.maps,
                                  recorder.input_size, (HEIGHT, WIDTH))
    assert grid.shape == (2 * (round(HEIGHT * 320 / WIDTH) + 28), 4 * 320, 3)  # 8 panels, 320 px wide


@pytest.mark.parametrize("pooling", ["max", "avg", "s3pool", "blur", *LEARNED_OPERATORS])
def test_operators_without_weights_have_no_importance_maps(pooling):
    model = build_model(repo_cfg(QUICK, "MODEL.LIP.POOLING", pooling))
    assert ImportanceRecorder(model).lips == []

