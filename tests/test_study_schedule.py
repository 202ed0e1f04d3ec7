"""Studies with a schedule axis (tools/study.py --schedules / 'schedules:'), and runs whose model
makes no detection, which are results (AP 0), not failures."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.image import imread

from lip_lab.study import (
    Run,
    Schedule,
    StudyError,
    StudySpec,
    aggregate,
    aggregate_sweep,
    format_sweep_table,
    has_no_detections,
    load_study_file,
    parse_arm,
    parse_schedules,
    run_finished,
    write_sweep_reports,
)
from lip_lab.study.runner import _slot_env
from tests.helpers import CONFIGS, REPO, load_tool
from tests.helpers import QUICK_LIP as LIP
from tests.helpers import QUICK_VANILLA as VANILLA

STUDY = REPO / "tools" / "study.py"
QUICK = Schedule(400, (300, 370), 50)


def test_schedules_scale_steps_with_max_iter_and_keep_warmup():
    assert QUICK.scaled(400) == QUICK
    assert QUICK.scaled(1600) == Schedule(1600, (1200, 1480), 50)  # steps at 75% / 92.5%, warmup fixed
    assert QUICK.scaled(4000) == Schedule(4000, (3000, 3700), 50)
    assert QUICK.scaled(200) == Schedule(200, (150, 185), 25)  # shorter: warmup shrinks in proportion
    assert QUICK.scaled(1600).opts() == ["SOLVER.MAX_ITER", "1600", "SOLVER.STEPS", "(1200, 1480)",
                                         "SOLVER.WARMUP_ITERS", "50"]
    assert Schedule(4, (3,), 2).scaled(8).opts()[3] == "(6,)" and Schedule(2, (), 1).scaled(4).steps == ()
    with pytest.raises(StudyError, match="cannot keep SOLVER.STEPS"):
        QUICK.scaled(4)  # steps 3 and 4 (= MAX_ITER)


def test_schedule_lengths_as_iterations_or_factors():
    assert parse_schedules("400,1600") == [400, 1600]
    assert parse_schedules(["1x", "4x", 2000, "0.5X"]) == ["1x", "4x", 2000, "0.5x"]
    assert parse_schedules("") == [] and parse_schedules(()) == []
    for bad in ("0", "-4", "4.5", "abc", "0x", "x", [True]):
        with pytest.raises(StudyError, match="schedule"):
            parse_schedules(bad)
    spec = StudySpec([parse_arm(f"a={REPO / VANILLA}")], [1], "out", schedules=("1x", "4x", 1600, "0.5x"))
    with pytest.raises(StudyError, match="base_schedule"):
        spec.schedule_lengths()
    spec.base_schedule = QUICK
    assert spec.schedule_lengths() == [200, 400, 1600]  # 4x = 1600 once


def test_sweep_runs_one_folder_per_schedule_arm_and_seed(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text(
        f"output: out\nseeds: 2\nschedules: [8, 1x]\nopts: {{SOLVER.CHECKPOINT_PERIOD: 4}}\n"
        f"arms:\n  vanilla: {REPO / VANILLA}\n"
        f"  lip:\n    config: {REPO / LIP}\n    opts: {{MODEL.LIP.LOGIT_NORM: IN}}\n"
    )
    spec = load_study_file(file)
    assert spec.schedules == (8, "1x")
    spec.base_schedule = Schedule(4, (3,), 2)
    assert [sub.output_dir for sub in spec.sub_studies()] == ["out/iter4", "out/iter8"]
    runs = spec.runs()
    assert [r.label for r in runs] == [
        f"iter{n}/{arm}/seed{s}" for n in (4, 8) for s in (1, 2) for arm in ("vanilla", "lip")
    ]
    assert runs[-1].output_dir == "out/iter8/lip/seed2" and runs[-1].schedule == Schedule(8, (6,), 2)
    # the schedule comes after the arm's own overrides, then the folder and seed
    assert spec.run_opts(runs[-1]) == [
        "SOLVER.CHECKPOINT_PERIOD", "4", "MODEL.LIP.LOGIT_NORM", "IN", "SOLVER.MAX_ITER", "8", "SOLVER.STEPS", "(6,)",
        "SOLVER.WARMUP_ITERS", "2", "OUTPUT_DIR", "out/iter8/lip/seed2", "SEED", "2",
    ]
    plain = StudySpec(spec.arms, [1], "out")  # without schedules: the layout of every earlier study
    assert [r.output_dir for r in plain.runs()] == ["out/vanilla/seed1", "out/lip/seed1"]
    assert plain.sub_studies() == [plain] and plain.runs()[0].schedule is None
    (tmp_path / "bad.yaml").write_text(f"output: out\nschedules: 400\narms: {{a: {REPO / VANILLA}}}\n")
    with pytest.raises(StudyError, match="'schedules' must be a list"):
        load_study_file(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name, lengths", [
    ("schedule_sweep.yaml", [400, 1600]), ("schedule_sweep_gpu.yaml", [400, 2000]),
])
def test_shipped_sweep_files_load_and_their_arms_are_comparable(name, lengths):
    spec = load_study_file(CONFIGS / "studies" / name)
    assert spec.baseline == "vanilla" and len(spec.seeds) >= 3 and {"vanilla", "lip"} <= {a.name for a in spec.arms}
    test_dataset, schedule = load_tool("study").check_arms(spec)
    assert (test_dataset, schedule) == ("lip_shapes_val", QUICK)
    assert spec.schedule_lengths() == lengths


def test_arms_of_a_sweep_must_share_the_whole_schedule(tmp_path):
    study = load_tool("study")
    argv = ["--output", str(tmp_path), "--schedules", "1x,2x", "--arm", f"a={REPO / VANILLA}",
            "--arm", f"b={REPO / VANILLA} SOLVER.WARMUP_ITERS 10"]
    spec = study.build_spec(study.parse_args(argv))
    with pytest.raises(StudyError, match="STEPS and WARMUP_ITERS"):
        study.check_arms(spec)
    spec = study.build_spec(study.parse_args(argv[:-2]))  # one arm; 1x and 2x of 400
    assert study.check_arms(spec)[1] == QUICK and spec.schedule_lengths() == [400, 800]


def test_one_gpu_is_shared_by_every_job_and_visible_gpus_are_kept(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert {_slot_env(slot, 1)["CUDA_VISIBLE_DEVICES"] for slot in range(4)} == {"0"}
    assert [_slot_env(slot, 2)["CUDA_VISIBLE_DEVICES"] for slot in range(3)] == ["0", "1", "0"]
    assert "CUDA_VISIBLE_DEVICES" not in _slot_env(0, 0)  # no GPU or one job: the parent's environment
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [_slot_env(slot, 2)["CUDA_VISIBLE_DEVICES"] for slot in range(3)] == ["3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6")
    assert {_slot_env(slot, 1)["CUDA_VISIBLE_DEVICES"] for slot in range(3)} == {"6"}


def _fake_run(tmp_path, predictions="[]", eval_iteration=6, max_iter=6, value="NaN"):
    """A run folder as Detectron2 leaves it after its final evaluation."""
    run = Run(parse_arm(f"a={REPO / VANILLA}"), 1, str(tmp_path / "a" / "seed1"))
    inference = tmp_path / "a" / "seed1" / "inference" / "val"
    inference.mkdir(parents=True)
    (inference.parent.parent / "config.yaml").write_text(yaml.safe_dump({"SOLVER": {"MAX_ITER": max_iter}}))
    if predictions is not None:
        (inference / "coco_instances_results.json").write_text(predictions)
    (inference.parent.parent / "metrics.json").write_text(
        '{"iteration": 5, "total_loss": 2.1}\n'
        f'{{"bbox/AP": {value}, "bbox/AP50": {value}, "bbox/APs": {value}, "iteration": {eval_iteration}}}\n'
    )
    return run


@pytest.mark.parametrize("kwargs, expected", [
    ({}, True),  # final evaluation, no detections
    ({"predictions": '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.9}]'}, False),
    ({"predictions": None}, False),  # no detections file: evaluation never ran
    ({"eval_iteration": 3}, False),  # an evaluation before the end (TEST.EVAL_PERIOD), then interrupted
    ({"max_iter": 10}, False),
    ({"value": "12.5"}, False),  # the evaluator found something
])
def test_no_detections_needs_every_piece_of_evidence(tmp_path, kwargs, expected):
    run = _fake_run(tmp_path, **kwargs)
    assert has_no_detections(run, "val") is expected
    assert run_finished(run, "val") is expected


def _study_dict(diffs_by_schedule):
    """``{N: study}`` with two arms, seeds 1-3, lip - vanilla = the given per-seed differences."""
    studies = {}
    for n, diffs in diffs_by_schedule.items():
        results = {
            "vanilla": {s: {"AP": 30.0 + s, "AP<16": 20.0, "APs": 25.0} for s in (1, 2, 3)},
            "lip": {s: {"AP": 30.0 + s + d, "AP<16": 20.0 + d, "APs": 25.0} for s, d in zip((1, 2, 3), diffs)},
        }
        studies[n] = aggregate(results, "vanilla", no_detections={"lip": [3]} if n == 1600 else None)
    return studies


def test_sweep_table_and_chart_from_studies(tmp_path):
    sweep = aggregate_sweep(_study_dict({400: [-4.0, -5.0, -3.0], 1600: [1.0, -1.0, 0.0]}))
    assert sweep["schedules"] == [400, 1600] and sweep["arms"] == ["vanilla", "lip"]
    d400, d1600 = (sweep["differences"]["lip"]["AP"][n] for n in (400, 1600))
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert (d400["n"], d400["mean"], d400["low"], d400["high"]) == (3, -4.0, pytest.approx(-4 - half),
                                                                    pytest.approx(-4 + half))
    assert d400["excludes_zero"] and not d1600["excludes_zero"]
    assert sweep["no_detections"]["lip"] == {400: [], 1600: [3]}
    table = format_sweep_table(sweep)
    assert "| AP       |          400 |" in table and "lip - vanilla [95% CI]" in table
    assert f"-4.00 [{-4 - half:+.2f}, {-4 + half:+.2f}] * (n=3)" in table
    assert len([line for line in table.splitlines() if line.startswith("| AP ")]) == 2  # a row per schedule
    paths = write_sweep_reports(sweep, str(tmp_path), header="Sweep")
    assert imread(paths["chart"]).shape[2] in (3, 4)
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["kind"], r["iterations"]) for r in rows if r["metric"] == "AP"} == {
        ("summary", "400"), ("summary", "1600"), ("lip - vanilla", "400"), ("lip - vanilla", "1600")}
    assert [r["no_detections"] for r in rows if r["kind"] == "summary" and r["arm"] == "lip" and r["metric"] == "AP"] \
        == ["0", "1"]
    assert json.loads(Path(paths["json"]).read_text())["differences"]["lip"]["AP"]["400"]["n"] == 3
    assert Path(paths["markdown"]).read_text().startswith("Sweep\n")


# Tiny trainings on the mini split: 128 px, one image per batch, detections kept at any score.
TINY = [
    "DATASETS.TRAIN", "('lip_shapes_mini_train',)", "DATASETS.TEST", "('lip_shapes_mini_val',)",
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS", "0",
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "128", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]


def _study(output, *args):
    argv = [sys.executable, str(STUDY), "--seeds", "2", "--output", str(output), "--threads", "1", "--jobs", "2", *args]
    return subprocess.run([*argv, *TINY], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_schedule_sweep_end_to_end_and_a_rerun_trains_nothing(tmp_path):
    arms = ["--arm", f"vanilla={VANILLA}", "--arm", f"lip={LIP}", "--schedules", "2,2x"]
    proc = _study(tmp_path, *arms)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "Study: 8 runs, 0 finished, 8 to train, 2 at a time" in proc.stdout
    for n in (2, 4):
        for arm in ("vanilla", "lip"):
            for seed in (1, 2):
                config = yaml.safe_load((tmp_path / f"iter{n}" / arm / f"seed{seed}" / "config.yaml").read_text())
                assert (config["SOLVER"]["MAX_ITER"], config["SEED"]) == (n, seed)
        assert json.loads((tmp_path / f"iter{n}" / "study.json").read_text())["schedule"]["max_iter"] == n
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert sweep["schedules"] == [2, 4] and sweep["baseline"] == "vanilla"
    for n in ("2", "4"):
        for metric in ("AP", "AP<16", "APs"):
            diff = sweep["differences"]["lip"][metric][n]
            assert diff["n"] == 2 and diff["low"] is not None and diff["low"] <= diff["mean"] <= diff["high"]
        assert sweep["seeds"]["lip"][n] == [1, 2] and sweep["no_detections"]["lip"][n] == []
    table = (tmp_path / "sweep.md").read_text()
    ap_rows = [line for line in table.splitlines() if line.startswith("| AP ")]
    assert len(ap_rows) == 4 and all(line.rstrip(" |").endswith("(n=2)") for line in ap_rows)  # 2 schedules, 2 tables
    assert "lip - vanilla [95% CI]" in proc.stdout and "| AP       |            4 |" in proc.stdout
    chart = imread(tmp_path / "sweep_differences.png")
    assert chart.ndim == 3 and chart.shape[0] > 200 and chart.shape[1] > 600
    with open(tmp_path / "sweep.csv", newline="") as f:
        assert {r["iterations"] for r in csv.DictReader(f)} == {"2", "4"}

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("iter*/*/seed*/model_final.pth")}
    assert len(stamps) == 8
    proc = _study(tmp_path, *arms)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "Study: 8 runs, 8 finished, 0 to train" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_runs_without_detections_count_as_zero_and_diverged_ones_fail(tmp_path):
    # SCORE_THRESH_TEST 1.0 keeps no detection (scores must exceed it): a model that detects nothing.
    arms = ["--arm", f"vanilla={VANILLA}", "--arm", f"mute={VANILLA} MODEL.ROI_HEADS.SCORE_THRESH_TEST 1.0"]
    proc = _study(tmp_path, *arms)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "done mute/seed1" in proc.stdout and "no detections (counted as AP 0)" in proc.stdout
    assert "mute (n=2, 2 without detections)" in proc.stdout and "FAILED" not in proc.stdout
    assert "vanilla 0 of 2, mute 2 of 2 (seeds 1, 2)" in proc.stdout
    predictions = tmp_path / "mute" / "seed1" / "inference" / "lip_shapes_mini_val" / "coco_instances_results.json"
    assert predictions.read_text() == "[]"
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["arms"]["mute"]["no_detections"] == [1, 2] and study["arms"]["vanilla"]["no_detections"] == []
    for seed in ("1", "2"):
        mute, vanilla = study["runs"]["mute"][seed], study["runs"]["vanilla"][seed]
        assert set(mute) == set(vanilla)  # the same metrics, absent (no ground truth) in both or in neither
        assert {m: v is None for m, v in mute.items()} == {m: v is None for m, v in vanilla.items()}
        assert all(v == 0.0 for v in mute.values() if v is not None)
    ap = study["differences"]["mute"]["AP"]
    assert ap["n"] == 2 and ap["mean"] == pytest.approx(-study["arms"]["vanilla"]["summary"]["AP"]["mean"])

    diverged = f"diverged={VANILLA} SOLVER.BASE_LR 1e30 SOLVER.WARMUP_ITERS 0"
    proc = _study(tmp_path, *arms, "--arm", diverged)
    assert "Study: 6 runs, 4 finished, 2 to train" in proc.stdout  # runs without detections are finished
    assert proc.returncode == 1 and "2 run(s) failed" in proc.stdout
    assert "FAILED diverged/seed1" in proc.stdout and "FAILED diverged/seed2" in proc.stdout
    assert "diverged" in (tmp_path / "diverged" / "seed1" / "train_stdout.log").read_text()  # FloatingPointError
    assert "mute (n=2, 2 without detections)" in proc.stdout and "diverged (n=0)" in proc.stdout
