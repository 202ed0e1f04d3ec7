"""tools/study.py: statistics against a hand computation, study files, and a tiny study end
to end (reports, resume, a failing arm)."""
import csv
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lip_lab.study import (
    StudyError,
    StudySpec,
    aggregate,
    load_study_file,
    paired_difference,
    parse_arm,
    results_path,
    run_study,
    summarize,
)
from lip_lab.study.report import _panel_limit
from tests.helpers import CONFIGS, REPO, load_tool
from tests.helpers import QUICK_LIP as LIP
from tests.helpers import QUICK_VANILLA as VANILLA

STUDY = REPO / "tools" / "study.py"


def test_paired_difference_equals_hand_computation():
    arm, base = [31.0, 33.5, 30.0, 34.0, 32.5], [30.0, 31.5, 31.0, 32.0, 30.5]
    # differences 1, 2, -1, 2, 2: mean 1.2, sample sd sqrt(((-.2)^2+.8^2+(-2.2)^2+.8^2+.8^2)/4) = sqrt(1.7)
    sd = math.sqrt(6.8 / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, df=4)
    diff = paired_difference(arm, base)
    assert (diff.n, diff.mean, diff.std) == (5, pytest.approx(1.2), pytest.approx(sd))
    assert (diff.low, diff.high) == (pytest.approx(1.2 - half), pytest.approx(1.2 + half))
    assert not diff.excludes_zero  # 1.2 - 1.619 < 0
    shifted = paired_difference([a + 1 for a in arm], base)
    assert shifted.low == pytest.approx(2.2 - half) and shifted.excludes_zero
    assert paired_difference([1.0], [0.5]).low is None  # one pair: no interval
    assert summarize([2.0, 4.0]).std == pytest.approx(math.sqrt(2))


def test_aggregate_pairs_by_seed_and_skips_absent_values():
    results = {
        "base": {1: {"AP": 10.0, "APl": None}, 2: {"AP": 12.0, "APl": 5.0}, 3: {"AP": 11.0, "APl": 6.0}},
        "new": {1: {"AP": 11.0, "APl": 4.0}, 3: {"AP": 14.0, "APl": 7.0}},  # seed 2 unfinished
    }
    study = aggregate(results, "base")
    assert study["arms"]["base"]["summary"]["AP"]["mean"] == pytest.approx(11.0)
    ap = study["differences"]["new"]["AP"]
    assert ap["n"] == 2 and ap["mean"] == pytest.approx(2.0)  # seeds 1 and 3: +1, +3
    assert study["differences"]["new"]["APl"]["n"] == 1  # seed 1 has no APl in the baseline
    assert study["metrics"] == ["AP", "APl"]


@pytest.mark.parametrize("name, max_iter", [("lip_vs_vanilla.yaml", 400), ("pooling_family.yaml", 200)])
def test_shipped_study_files_load_and_their_arms_are_comparable(name, max_iter):
    spec = load_study_file(CONFIGS / "studies" / name)
    assert spec.baseline == "vanilla" and len(spec.seeds) >= 3
    test_dataset, schedule = load_tool("study").check_arms(spec)
    assert (test_dataset, schedule.max_iter) == ("lip_shapes_val", max_iter)


def test_study_descriptions_and_their_errors(tmp_path):
    arm = parse_arm(f"lip_in={LIP} MODEL.LIP.LOGIT_NORM IN")
    assert (arm.name, arm.config_file, arm.opts) == ("lip_in", LIP, ("MODEL.LIP.LOGIT_NORM", "IN"))
    for bad in ("lip", f"lip={LIP} MODEL.LIP.LOGIT_NORM", f"={LIP}"):
        with pytest.raises(StudyError, match="--arm"):
            parse_arm(bad)
    file = tmp_path / "study.yaml"
    file.write_text(
        f"output: out\nseeds: [3, 7]\nopts: {{SOLVER.STEPS: [10, 20]}}\n"
        f"arms:\n  vanilla: {REPO / VANILLA}\n  lip:\n    config: {REPO / LIP}\n    opts: {{MODEL.LIP.LOGIT_NORM: ''}}\n"
    )
    spec = load_study_file(file)
    assert spec.seeds == [3, 7] and spec.baseline == "vanilla" and spec.opts == ("SOLVER.STEPS", "(10, 20)")
    runs = spec.runs()
    assert [r.label for r in runs] == ["vanilla/seed3", "lip/seed3", "vanilla/seed7", "lip/seed7"]
    assert spec.run_opts(runs[1])[-6:] == ["MODEL.LIP.LOGIT_NORM", "", "OUTPUT_DIR", "out/lip/seed3", "SEED", "3"]
    with pytest.raises(StudyError, match="distinct"):
        StudySpec([arm, arm], [1], "out")
    with pytest.raises(StudyError, match="config file not found"):
        StudySpec([parse_arm("x=missing.yaml")], [1], "out")
    with pytest.raises(StudyError, match="baseline"):
        StudySpec([arm], [1], "out", baseline="nope")
    (tmp_path / "bad.yaml").write_text("arms: [")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study_file(tmp_path / "bad.yaml")


TINY = [
    "DATASETS.TRAIN", "('lip_shapes_mini_train',)", "DATASETS.TEST", "('lip_shapes_mini_val',)",
    "SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "2",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]


def _study(output, *arms, check=True, jobs=1):
    argv = [sys.executable, str(STUDY), "--seeds", "2", "--output", str(output), "--threads", "1", "--jobs", str(jobs)]
    for arm in arms:
        argv += ["--arm", arm]
    proc = subprocess.run([*argv, *TINY], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check:
        assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


@pytest.mark.slow
def test_tiny_study_reports_resumes_and_survives_a_failing_arm(tmp_path):
    proc = _study(tmp_path, f"vanilla={VANILLA}", f"lip={LIP}")
    assert "Study: 4 runs, 0 finished, 4 to train" in proc.stdout
    assert "| metric" in proc.stdout and "lip - vanilla [95% CI]" in proc.stdout
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["baseline"] == "vanilla" and study["arms"]["lip"]["seeds"] == [1, 2]
    assert study["differences"]["lip"]["AP"]["n"] == 2 and "circle/AP<16" in study["metrics"]
    lip_ap = [study["runs"]["lip"][s]["AP"] for s in ("1", "2")]
    assert study["arms"]["lip"]["summary"]["AP"]["mean"] == pytest.approx(sum(lip_ap) / 2)
    with open(tmp_path / "study.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["kind"] for r in rows} == {"summary", "lip - vanilla"}
    for name in ("study_ap_by_size", "study_differences", "study_loss"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    stamp = (tmp_path / "lip" / "seed1" / "model_final.pth").stat().st_mtime_ns
    broken = f"broken={VANILLA} DATASETS.TRAIN \"('no_such_dataset',)\""
    proc = _study(tmp_path, f"vanilla={VANILLA}", f"lip={LIP}", broken, check=False, jobs=2)
    assert "Study: 6 runs, 4 finished, 2 to train, 2 at a time" in proc.stdout  # finished runs are skipped
    assert (tmp_path / "lip" / "seed1" / "model_final.pth").stat().st_mtime_ns == stamp
    assert "FAILED broken/seed1" in proc.stdout and "FAILED broken/seed2" in proc.stdout
    assert proc.returncode == 1 and "2 run(s) failed" in proc.stdout
    assert "no_such_dataset" in (tmp_path / "broken" / "seed1" / "train_stdout.log").read_text()


def test_runs_go_jobs_at_a_time_one_gpu_slot_each(tmp_path):
    """Fake trainings (a script that sleeps, then writes the results file) overlap in time
    with jobs=2, take GPU slots 0 and 1, and a failing one is reported while the rest finish."""
    spec = StudySpec([parse_arm(f"a={REPO / VANILLA}"), parse_arm(f"b={REPO / VANILLA}")], [1, 2], str(tmp_path))
    script = (
        "import json, os, sys, time; out = sys.argv[1]; start = time.time(); print('iter: 1', flush=True);"
        "time.sleep(0.5); path = os.path.join(out, 'inference', 'val', 'ap_by_size_bbox.json');"
        "os.makedirs(os.path.dirname(path)); json.dump({'gpu': os.environ['CUDA_VISIBLE_DEVICES'],"
        " 'span': [start, time.time()]}, open(path, 'w')); sys.exit(out.endswith('b/seed2'))"
    )
    failed = run_study(spec, lambda run: [sys.executable, "-c", script, run.output_dir], "val", 1,
                       logging.getLogger("test"), jobs=2, num_gpus=2)
    assert failed == {"b/seed2": 1}
    written = [json.loads(Path(results_path(run, "val")).read_text()) for run in spec.runs()]
    assert {w["gpu"] for w in written} == {"0", "1"}
    (start_a, end_a), (start_b, _) = written[0]["span"], written[1]["span"]
    assert start_b < end_a, "the first two runs should overlap with jobs=2"


def test_bad_study_command_is_one_line(tmp_path, capsys):
    study = load_tool("study")
    for arm in (f"vanilla={REPO}/configs/quick/missing.yaml", f"vanilla={REPO / VANILLA} MODEL.NO_SUCH_KEY 1"):
        status = study.main(["--arm", arm, "--output", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: arm 'vanilla'"), err
    status = study.main(["--jobs", "0", "--arm", f"vanilla={REPO / VANILLA}", "--output", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err == "error: --jobs must be at least 1, got 0", err


def test_forest_panels_clip_only_the_widest_intervals():
    diffs = [{"mean": m, "low": m - h, "high": m + h} for m, h in [(0, 1), (0.2, 1), (-0.5, 1), (1, 1), (0, 30)]]
    assert _panel_limit(diffs) == pytest.approx(1.15 * 2)  # 4 of 5 intervals fit, the n=2-like one is clipped
    assert _panel_limit([{"mean": -9.0, "low": None, "high": None}]) == pytest.approx(1.15 * 9)  # means always fit
