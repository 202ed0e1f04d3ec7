"""tools/train_net.py end to end on CPU: training, atomic checkpoints, kill + resume,
eval-only, two-process training, and one-line errors for bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog

from lip_det import get_lip_cfg
from lip_lab.checkpoint import LIPCheckpointer
from lip_lab.cli import INPUT_ERRORS, UsageError, check_train_inputs, train_argument_parser
from lip_lab.data import DatasetError, ensure_shapes_split, prepare_datasets
from lip_lab.engine import LIPTrainer

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "tools" / "train_net.py"
QUICK = REPO / "configs" / "quick" / "faster_rcnn_lip_r18_shapes.yaml"
# A handful of iterations on the mini splits; every image keeps detections for a non-trivial AP.
TINY = [
    "DATASETS.TRAIN", "('lip_shapes_mini_train',)", "DATASETS.TEST", "('lip_shapes_mini_val',)",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "3", "SOLVER.STEPS", "()",
    "DATALOADER.NUM_WORKERS", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]
EVAL_DIR = Path("inference") / "lip_shapes_mini_val"


def _run(*args, check=True, **kwargs):
    """Runs train_net.py; ``.stdout`` holds its log and errors together."""
    proc = subprocess.run([sys.executable, str(TRAIN_NET), *map(str, args)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


@pytest.mark.slow
def test_training_learns_checkpoints_and_reports(tmp_path):
    cfg = get_lip_cfg(QUICK, [*TINY, "SOLVER.MAX_ITER", "14", "SOLVER.CHECKPOINT_PERIOD", "7", "OUTPUT_DIR", str(tmp_path)])
    prepare_datasets(cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)
    trainer = LIPTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 14 and sum(losses[-4:]) < sum(losses[:4])
    assert (tmp_path / "model_0000006.pth").is_file() and (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    results = trainer._last_eval_results["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "AP<16", "AP16_32"} <= results.keys()
    report = json.loads((tmp_path / EVAL_DIR / "ap_by_size_bbox.json").read_text())
    assert report[tmp_path.name]["metrics"]["AP"] == pytest.approx(results["AP"])
    assert (tmp_path / EVAL_DIR / "ap_by_size_bbox.csv").is_file()
    assert (tmp_path / EVAL_DIR / "ap_by_size_bbox.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    def killed_mid_write(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # what SIGINT raises inside torch.save

    for atomic, checkpointer_class in ((False, DetectionCheckpointer), (True, LIPCheckpointer)):
        folder = tmp_path / str(atomic)
        folder.mkdir()
        checkpointer = checkpointer_class(torch.nn.Linear(3, 2), str(folder))
        checkpointer.save("model_0000001")
        with monkeypatch.context() as m:
            m.setattr(torch, "save", killed_mid_write)
            with pytest.raises(KeyboardInterrupt):
                checkpointer.save("model_0000001")
        loadable = (folder / "model_0000001.pth").read_bytes() != b"partial"
        assert loadable == atomic  # without the fix, the checkpoint a resume reads is truncated
    assert sorted(p.name for p in (tmp_path / "True").iterdir()) == ["last_checkpoint", "model_0000001.pth"]
    assert "model" in torch.load(tmp_path / "True" / "model_0000001.pth", weights_only=False)


@pytest.mark.slow
def test_resume_after_kill_then_eval_only_matches(tmp_path):
    out = tmp_path / "run"
    opts = [*TINY, "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "3", "OUTPUT_DIR", out]
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(TRAIN_NET), "--config-file", str(QUICK), *map(str, opts)],
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not (out / "last_checkpoint").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "model_final.pth").exists(), "training ended before it could be killed"
    checkpoint = out / (out / "last_checkpoint").read_text()
    iteration = torch.load(checkpoint, weights_only=False)["iteration"]
    assert iteration < 9

    resumed = _run("--config-file", QUICK, "--resume", *opts)
    assert f"Starting training from iteration {iteration + 1}\n" in resumed.stdout
    assert "freed memory is kept for reuse" in resumed.stdout
    assert (out / "model_final.pth").is_file()
    trained = json.loads((out / EVAL_DIR / "ap_by_size_bbox.json").read_text())[out.name]

    evaluated = tmp_path / "eval" / out.name
    _run("--config-file", QUICK, "--eval-only", *TINY, "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", evaluated)
    assert json.loads((evaluated / EVAL_DIR / "ap_by_size_bbox.json").read_text())[out.name] == trained
    assert trained["metrics"]["AP50"] is not None


@pytest.mark.slow
def test_two_process_cpu_training_on_a_user_dataset(tmp_path):
    """Both workers register the --register-coco dataset (here a repaired copy: ids from 0)."""
    json_file, image_root = ensure_shapes_split("lip_shapes_mini_train")
    data = json.loads(Path(json_file).read_text())
    for i, ann in enumerate(data["annotations"]):
        ann["id"] = i
    user_json = tmp_path / "user.json"
    user_json.write_text(json.dumps(data))
    proc = _run("--config-file", QUICK, "--num-gpus", "2", "--register-coco", "my_shapes", user_json, image_root,
                *TINY, "DATASETS.TRAIN", "('my_shapes',)", "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", tmp_path)
    assert "annotation ids start at 0" in proc.stdout
    assert "World size: 2" in proc.stdout
    assert "AP by object size (bbox)" in proc.stdout
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / EVAL_DIR / "ap_by_size_bbox.json").is_file()


def _args(config_file=QUICK, *opts, eval_only=False, resume=False):
    flags = ["--eval-only"] * eval_only + ["--resume"] * resume
    return train_argument_parser().parse_args(["--config-file", str(config_file), *flags, *map(str, opts)])


@pytest.mark.parametrize("args, message", [
    (_args("configs/nope.yaml"), "config file not found: 'configs/nope.yaml'"),
    (_args(QUICK, "MODEL.WEIGHTS", "missing.pth"), "MODEL.WEIGHTS file not found: missing.pth"),
    (_args(QUICK, eval_only=True), "--eval-only needs trained weights"),
    (_args(QUICK, "MODEL.LIP.LOGIT_NORM", "BN"), "MODEL.LIP.LOGIT_NORM = 'BN' is not valid"),
    (_args(QUICK, "MODEL.NOT_A_KEY", "1"), "unknown config key MODEL.NOT_A_KEY"),
    (_args(QUICK, "SOLVER.MAX_ITER"), "KEY VALUE pairs; got an odd number"),
    (_args(QUICK, "SOLVER.MAX_ITER", "many"), "Type mismatch"),
    (_args(QUICK, "DATASETS.TEST", "('coco_2017_val',)"), "instances_val2017.json; lay COCO out"),
])
def test_bad_input_is_caught_before_launch(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(INPUT_ERRORS, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_train_inputs(args)


@pytest.mark.parametrize("text,message", [
    ("MODEL:\n  NOT_A_KEY: 1\n", "Non-existent config key: MODEL.NOT_A_KEY"),
    ("_BASE_: missing.yaml\n", "No such file or directory"),
    ("MODEL: [unclosed\n", "while parsing"),
])
def test_bad_config_file_is_one_usage_error(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(UsageError, match=message) as err:
        check_train_inputs(_args(tmp_path / "bad.yaml"))
    assert "\n" not in str(err.value)


def test_input_check_generates_no_dataset(monkeypatch):
    def no_generation(*args):
        raise AssertionError("check_train_inputs generated a dataset")

    monkeypatch.setattr("lip_lab.data.builtin.ensure_shapes_split", no_generation)
    cfg = check_train_inputs(_args(QUICK, *TINY))
    assert list(cfg.DATASETS.TRAIN) == ["lip_shapes_mini_train"]


def test_import_leaves_detectron2_coco_registrations_alone():
    assert DatasetCatalog["coco_2017_val"].__module__.startswith("detectron2.")


def test_malformed_annotation_file_is_one_dataset_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Detectron2's COCO paths are relative to $DETECTRON2_DATASETS=datasets
    (tmp_path / "datasets/coco/annotations").mkdir(parents=True)
    (tmp_path / "datasets/coco/val2017").mkdir()
    (tmp_path / "datasets/coco/annotations/instances_val2017.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match="instances_val2017.json is not a COCO instances file") as err:
        LIPTrainer.build_test_loader(get_lip_cfg(), "coco_2017_val")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_bad_input_is_one_line_without_traceback(tmp_path):
    env = {**os.environ, "DETECTRON2_DATASETS": str(tmp_path / "nowhere")}
    proc = _run("--config-file", QUICK, "DATASETS.TEST", "('coco_2017_val',)", check=False, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout
    error_lines = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(tmp_path / "nowhere" / "coco") in error_lines[0]


def test_trainer_warm_starts_from_torchvision_weights_exactly(tmp_path):
    resnet18 = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(resnet18, tmp_path / "resnet18.pth")
    cfg = get_lip_cfg(QUICK, [*TINY, "MODEL.WEIGHTS", str(tmp_path / "resnet18.pth"), "OUTPUT_DIR", str(tmp_path / "out")])
    trainer = LIPTrainer(cfg)
    assert isinstance(trainer.checkpointer, LIPCheckpointer)
    trainer.resume_or_load(resume=False)
    load = trainer.checkpointer.trunk_load
    assert load.prefix == "backbone.bottom_up." and "LIP starts as average pooling" in load.summary()
    assert "backbone.bottom_up.res3.0.lip.logit.conv.weight" not in load.state_dict
    state = trainer.model.state_dict()
    torch.testing.assert_close(state["backbone.bottom_up.res4.1.conv2.weight"], resnet18["layer3.1.conv2.weight"])
    torch.testing.assert_close(state["backbone.bottom_up.res3.0.conv1.weight"], resnet18["layer2.0.conv1.weight"])


@pytest.mark.slow
def test_unreadable_weights_are_one_line_without_traceback(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 truncated download")
    proc = _run("--config-file", QUICK, *TINY, "MODEL.WEIGHTS", tmp_path / "broken.pth",
                "OUTPUT_DIR", tmp_path / "out", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout
    error_lines = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "broken.pth" in error_lines[0]
