"""LazyConfig: Detectron2's new baselines turned LIP in two lines, the shipped Python configs, their
YAML twins, and tools/lazyconfig_train_net.py."""
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.data import get_detection_dataset_dicts
from detectron2.data.samplers import TrainingSampler
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from helpers import CONFIGS, LAZY_CONFIGS, REPO, detection_batch, load_tool, repo_cfg
from lip_det import get_lip_cfg
from lip_lab.cli import load_lazy_config
from lip_lab.data import prepare_datasets
from lip_lab.engine import (LIPTrainer, check_lazy_lip_options, config_target, lazy_train,
                            naive_sync_batchnorm)
from lip_det.modeling.backbone import LIPStem, make_lip_stages

LAZY_TOOL = REPO / "tools" / "lazyconfig_train_net.py"
QUICK_LIP = CONFIGS / "lazy" / "quick" / "faster_rcnn_lip_r18_shapes.py"
CPU = ["train.device=cpu", "train.amp.enabled=False"]
# Each lazy config with a YAML twin: the same path without lazy/, .yaml for .py.
YAML_TWINS = [(name, name[len("lazy/"):-len(".py")] + ".yaml") for name in LAZY_CONFIGS
              if (CONFIGS / (name[len("lazy/"):-len(".py")] + ".yaml")).is_file()]
# The LSJ baseline's model (Detectron2's configs/new_baselines) in MODEL.* keys.
LSJ_AS_YACS = [
    "MODEL.RESNETS.NORM", "SyncBN", "MODEL.RESNETS.STRIDE_IN_1X1", True, "MODEL.FPN.NORM", "SyncBN",
    "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.RPN.CONV_DIMS", [-1, -1],
    "MODEL.ROI_BOX_HEAD.NUM_CONV", 4, "MODEL.ROI_BOX_HEAD.CONV_DIM", 256, "MODEL.ROI_BOX_HEAD.NUM_FC", 1,
    "MODEL.ROI_BOX_HEAD.NORM", "naiveSyncBN", "MODEL.ROI_MASK_HEAD.NORM", "naiveSyncBN",
]


def _architecture(model):
    """Every parameter and buffer (name -> shape) and every module (name -> class name; other tests reload
    lip_det's modules, so classes are compared by name)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes, {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in model.named_modules()}


def _num_parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_detectron2_lsj_baseline_turns_lip_in_two_lines():
    cfg = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
    cfg.model.backbone.bottom_up.stem._target_ = LIPStem  # the README's two lines
    cfg.model.backbone.bottom_up.stages._target_ = make_lip_stages
    lazy_model = instantiate(cfg.model)
    yacs_model = build_model(repo_cfg("mask_rcnn_lip_r50.yaml", *LSJ_AS_YACS))
    assert isinstance(lazy_model.backbone.bottom_up.stem, LIPStem)
    assert _num_parameters(lazy_model) == _num_parameters(yacs_model) == 44_608_432
    assert _architecture(lazy_model) == _architecture(yacs_model)
    assert type(lazy_model.backbone.bottom_up.res3[0]).__name__ == "LIPBottleneckBlock"


def _cpu_config(name, *opts):
    return load_lazy_config(str(CONFIGS / name), [*CPU, *opts])


@pytest.mark.slow
@pytest.mark.parametrize("name", LAZY_CONFIGS)
def test_lazy_config_trains_one_step_and_infers(name):
    torch.manual_seed(0)
    cfg = _cpu_config(name, "model.backbone.bottom_up.freeze_at=0")
    model = instantiate(cfg.model)
    masks = "mask_head" in cfg.model.get("roi_heads", {})
    num_classes = cfg.model.roi_heads.num_classes if "roi_heads" in cfg.model else cfg.model.num_classes
    model.train()
    with EventStorage(0):
        losses = model(detection_batch(num_classes=num_classes, masks=masks))
    assert ("loss_mask" in losses) == masks
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.bottom_up.stem.parameters())
    model.eval()
    with torch.no_grad():
        instances = model(detection_batch(num_images=1))[0]["instances"]
    assert instances.image_size == (96, 128) and instances.has("pred_masks") == masks


def test_lsj_config_keeps_its_settings_and_evaluates_by_size():
    cfg = _cpu_config("lazy/mask_rcnn_lip_R_50_FPN_100ep_LSJ.py")
    bottom_up = cfg.model.backbone.bottom_up
    assert bottom_up.stem.norm == bottom_up.stages.norm == cfg.model.backbone.norm == "SyncBN"  # the run converts modules
    assert bottom_up.stem._target_ is LIPStem
    assert cfg.dataloader.evaluator._target_.__name__ == "SizeAPEvaluator"
    assert cfg.dataloader.evaluator.output_dir == "./output/lazy/mask_rcnn_lip_R_50_FPN_100ep_LSJ/inference/coco_2017_val"


def test_sync_batchnorm_becomes_naive_with_its_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4), torch.nn.Sequential(torch.nn.SyncBatchNorm(4)))
    model[1].running_mean.fill_(0.5)
    model[1].weight.requires_grad_(False)
    assert naive_sync_batchnorm(model) == 2
    assert [type(m).__name__ for m in model.modules()].count("NaiveSyncBatchNorm") == 2
    assert model[1].running_mean.eq(0.5).all() and not model[1].weight.requires_grad
    x = torch.randn(2, 3, 5, 5)
    assert model(x).shape == (2, 4, 5, 5)  # one process: plain BN


@pytest.mark.parametrize("name", LAZY_CONFIGS)
def test_shipped_lazy_configs_pass_the_lip_check(name):
    check_lazy_lip_options(load_lazy_config(str(CONFIGS / name)))


def _training_settings(cfg):
    """The YACS keys of a config's training settings, read from its LazyConfig twin."""
    bottom_up = cfg.model.backbone.bottom_up
    densenet = "densenet" in config_target(bottom_up.stages).__name__
    norm_key = "MODEL.DENSENET.NORM" if densenet else "MODEL.RESNETS.NORM"
    test_resize = cfg.dataloader.test.mapper.augmentations[0]
    train_resize = cfg.dataloader.train.mapper.augmentations[0]
    num_steps = len(cfg.lr_multiplier.scheduler.milestones)
    return {
        "MODEL.WEIGHTS": cfg.train.init_checkpoint, "MODEL.PIXEL_MEAN": list(cfg.model.pixel_mean),
        "MODEL.PIXEL_STD": list(cfg.model.pixel_std), "INPUT.FORMAT": cfg.dataloader.train.mapper.image_format,
        "MODEL.BACKBONE.FREEZE_AT": bottom_up.freeze_at, norm_key: bottom_up.stages.norm,
        "SOLVER.BASE_LR": cfg.optimizer.lr, "SOLVER.MOMENTUM": cfg.optimizer.momentum,
        "SOLVER.WEIGHT_DECAY": cfg.optimizer.weight_decay, "SOLVER.IMS_PER_BATCH": cfg.dataloader.train.total_batch_size,
        "SOLVER.MAX_ITER": cfg.train.max_iter, "SOLVER.CHECKPOINT_PERIOD": cfg.train.checkpointer.period,
        "SOLVER.STEPS": tuple(cfg.lr_multiplier.scheduler.milestones[: num_steps - (num_steps == 3)]),
        "SOLVER.WARMUP_ITERS": round(cfg.lr_multiplier.warmup_length * cfg.train.max_iter),
        "SOLVER.WARMUP_FACTOR": cfg.lr_multiplier.warmup_factor,
        "DATASETS.TRAIN": (cfg.dataloader.train.dataset.names,), "DATASETS.TEST": (cfg.dataloader.test.dataset.names,),
        "INPUT.MIN_SIZE_TRAIN": tuple(train_resize.short_edge_length), "INPUT.MAX_SIZE_TRAIN": train_resize.max_size,
        "INPUT.MIN_SIZE_TEST": test_resize.short_edge_length, "INPUT.MAX_SIZE_TEST": test_resize.max_size,
        "SEED": cfg.train.seed, "TEST.EVAL_PERIOD": cfg.train.eval_period,
    }


@pytest.mark.parametrize("lazy_name,yaml_name", [
    pytest.param(*twin, marks=() if "quick" in twin[0] else pytest.mark.slow) for twin in YAML_TWINS
])
def test_lazy_config_matches_its_yaml_twin(lazy_name, yaml_name):
    cfg, yaml_cfg = load_lazy_config(str(CONFIGS / lazy_name)), get_lip_cfg(CONFIGS / yaml_name)
    for key, value in _training_settings(cfg).items():
        expected = yaml_cfg
        for part in key.split("."):
            expected = expected[part]
        assert value == (list(expected) if isinstance(expected, list) else expected), key
    assert _architecture(instantiate(cfg.model)) == _architecture(build_model(repo_cfg(yaml_name)))


def _losses(storage):
    return {k: [v for v, _ in h.values()] for k, h in storage.histories().items() if "loss" in k}


@pytest.mark.slow
def test_lazy_run_and_its_yaml_twin_give_the_same_losses(tmp_path):
    """Same seed, same model, data order, optimizer and schedule: identical losses, iteration by iteration."""
    prepare_datasets(["lip_shapes_mini_train"])
    yaml_cfg = repo_cfg("quick/faster_rcnn_lip_r18_shapes.yaml", *[
        "DATASETS.TRAIN", ("lip_shapes_mini_train",), "DATASETS.TEST", (), "DATALOADER.NUM_WORKERS", 0,
        "SOLVER.MAX_ITER", 4, "SOLVER.BASE_LR", 0.01, "SOLVER.WARMUP_ITERS", 0, "SOLVER.STEPS", (),
        "OUTPUT_DIR", str(tmp_path / "yaml"),
    ])
    seed_all_rng(yaml_cfg.SEED)
    yaml_trainer = LIPTrainer(yaml_cfg)
    yaml_trainer.train()
    cfg = _cpu_config(str(QUICK_LIP.relative_to(CONFIGS)), *[  # the same overrides, spelled for LazyConfig
        "dataloader.train.dataset.names=lip_shapes_mini_train", "dataloader.evaluator=null",
        "dataloader.train.num_workers=0", "train.max_iter=4", "optimizer.lr=0.01",
        "lr_multiplier.warmup_length=0", "lr_multiplier.scheduler.values=[1.0]",
        "lr_multiplier.scheduler.milestones=[]", "lr_multiplier.scheduler.num_updates=4",
        f"train.output_dir={tmp_path / 'lazy'}",
    ])
    # YACS seeds its TrainingSampler with SEED; Detectron2's lazy loader draws the sampler's seed from the
    # seeded RNG instead: give the lazy run YACS's sampler, so both read the images in the same order.
    num_images = len(get_detection_dataset_dicts(["lip_shapes_mini_train"]))
    cfg.dataloader.train.sampler = L(TrainingSampler)(size=num_images, seed=yaml_cfg.SEED)
    seed_all_rng(cfg.train.seed)
    lazy_trainer = lazy_train(cfg)
    expected = _losses(yaml_trainer.storage)
    assert len(expected["total_loss"]) == 4 and len(set(expected["total_loss"])) == 4
    assert _losses(lazy_trainer.storage) == expected


def _tool(*args, check=True):
    proc = subprocess.run([sys.executable, str(LAZY_TOOL), *map(str, args)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check:
        assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


MINI = ["dataloader.train.dataset.names=lip_shapes_mini_train", "dataloader.test.dataset.names=lip_shapes_mini_val",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2",
        "model.roi_heads.box_predictor.test_score_thresh=0.0", "lr_multiplier.warmup_length=0.5"]


@pytest.mark.slow
def test_tool_trains_checkpoints_resumes_and_evaluates_by_size(tmp_path):
    out = tmp_path / "run"
    opts = [*MINI, "train.checkpointer.period=2", f"train.output_dir={out}"]
    _tool("--config-file", QUICK_LIP, *opts, "train.max_iter=3")
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(out / "model_0000001.pth", weights_only=False)["iteration"] == 1
    report = json.loads((out / "inference/lip_shapes_mini_val/ap_by_size_bbox.json").read_text())["run"]
    assert {"AP", "AP<16", "AP16_32", "APs"} <= report["metrics"].keys()

    resumed = _tool("--config-file", QUICK_LIP, "--resume", *opts, "train.max_iter=5")
    assert "Starting training from iteration 3\n" in resumed.stdout
    assert torch.load(out / "model_final.pth", weights_only=False)["iteration"] == 4

    evaluated = _tool("--config-file", QUICK_LIP, "--eval-only", *MINI, f"train.init_checkpoint={out / 'model_final.pth'}",
                      f"train.output_dir={tmp_path / 'eval'}")
    assert "AP by object size (bbox)" in evaluated.stdout


@pytest.mark.slow
def test_tool_trains_with_two_cpu_processes_sync_bn_and_a_user_dataset(tmp_path):
    from lip_lab.data import ensure_shapes_split

    json_file, image_root = ensure_shapes_split("lip_shapes_mini_train")
    sync_bn = ["model.backbone.bottom_up.stem.norm=SyncBN", "model.backbone.bottom_up.stages.norm=SyncBN"]
    proc = _tool("--config-file", QUICK_LIP, "--num-gpus", 2, "--register-coco", "my_shapes", json_file, image_root,
                 *MINI, "dataloader.train.dataset.names=my_shapes", *sync_bn, "train.max_iter=2",
                 f"train.output_dir={tmp_path}")
    assert "World size: 2" in proc.stdout and "SyncBN norm(s) of the model are naiveSyncBN" in proc.stdout
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "inference/lip_shapes_mini_val/ap_by_size_bbox.json").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--config-file", "configs/lazy/nope.py"], "config file not found: 'configs/lazy/nope.py'"),
    (["--config-file", QUICK_LIP, "train.max_itr=3"], "unknown config key train.max_itr"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stages.no_such_arg=1"],
     "model.backbone.bottom_up.stages.no_such_arg is not an argument of make_lip_stages; LIP keywords: pooling,"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stages.poolng=max"],
     "model.backbone.bottom_up.stages.poolng is not an argument of make_lip_stages (did you mean pooling?)"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stages.pooling=median"],
     "model.backbone.bottom_up.stages.pooling = 'median' is not valid; allowed values: 'lip', 'softpool'"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stem.lp_p=0.5"],
     "model.backbone.bottom_up.stem.lp_p = 0.5 is not valid; use a finite number >= 1"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stages.s3pool_grid=3"],
     "model.backbone.bottom_up.stages.s3pool_grid = 3 is not valid; use an even integer >= 2"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stem.logit_norm=BN"],
     "model.backbone.bottom_up.stem.logit_norm = 'BN' is not valid; allowed values: 'IN', 'GN', ''"),
    (["--config-file", QUICK_LIP, "model.backbone.bottom_up.stages.lip_stages=[res2]"],
     "model.backbone.bottom_up.stages.lip_stages = ['res2'] is not valid; use distinct names among 'res3'"),
    (["--config-file", QUICK_LIP, "model.roi_heads.box_head.no_such_arg=1"],
     "unknown config key model.roi_heads.box_head.no_such_arg"),
    (["--config-file", QUICK_LIP, "train.max_iter"], "'train.max_iter' is not key=value"),
    (["--config-file", CONFIGS / "faster_rcnn_lip_r50.yaml"], "not a LazyConfig training config"),
    (["--config-file", QUICK_LIP, "train.init_checkpoint=missing.pth"], "train.init_checkpoint file not found: missing.pth"),
    (["--config-file", QUICK_LIP, "train.amp.enabled=True"], "add train.amp.enabled=False"),
    (["--config-file", QUICK_LIP, "--eval-only"], "--eval-only needs trained weights: pass train.init_checkpoint="),
    (["--config-file", QUICK_LIP, "model.roi_heads.num_classes=3"], "add model.roi_heads.num_classes=4"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    _assert_one_error_line(load_tool("lazyconfig_train_net").run([*map(str, argv), f"train.output_dir={tmp_path}"]),
                           message, capsys)


def _assert_one_error_line(status, message, capsys):
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.parametrize("line,message", [
    ('model.backbone.bottom_up.stem.poolng = "max"',
     "model.backbone.bottom_up.stem.poolng is not an argument of LIPStem (did you mean pooling?)"),
    ('model.backbone.top_block = L(LIPLastLevel)(channels=64, pooling="median")',
     "model.backbone.top_block.pooling = 'median' is not valid; allowed values: 'lip'"),
    ('model.backbone.top_block = L(LIPLastLevel)(channels=64, logit_norm="GN", logit_width=48)',
     "model.backbone.top_block.logit_width = 48 does not divide into 32 groups for model.backbone.top_block.logit_norm"),
])
def test_lip_keywords_written_in_a_config_file_are_checked_before_launch(line, message, capsys, tmp_path):
    config = tmp_path / "bad_lip.py"
    config.write_text(textwrap.dedent(f"""\
        from detectron2.config import LazyCall as L
        from detectron2.config import LazyConfig
        from lip_det.modeling.backbone import LIPLastLevel

        _base = LazyConfig.load({str(QUICK_LIP)!r})
        model, dataloader, optimizer, lr_multiplier, train = (
            _base[name] for name in ("model", "dataloader", "optimizer", "lr_multiplier", "train"))
        {line}
    """))
    status = load_tool("lazyconfig_train_net").run(["--config-file", str(config), f"train.output_dir={tmp_path}"])
    _assert_one_error_line(status, message, capsys)
