"""Runs a study's trainings, each through the normal training command, ``jobs`` at a time, and
tells from what a run leaves whether it finished."""
import json
import math
import os
import queue
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml
from tqdm import tqdm

__all__ = ["RESULTS_NAME", "results_path", "predictions_path", "has_no_detections", "run_finished", "run_study"]

RESULTS_NAME = "ap_by_size_bbox.json"
PREDICTIONS_NAME = "coco_instances_results.json"
_ITER = re.compile(r"\biter: (\d+)\b")


def results_path(run, test_dataset):
    """Where a finished run's AP-by-size JSON is (written by the evaluator at the end)."""
    return os.path.join(run.output_dir, "inference", test_dataset, RESULTS_NAME)


def predictions_path(run, test_dataset):
    """Where Detectron2's COCO evaluator writes the run's detections (a JSON list)."""
    return os.path.join(run.output_dir, "inference", test_dataset, PREDICTIONS_NAME)


def _json_or_none(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _final_evaluation(output_dir):
    """``(iteration, {bbox metric: value})`` of the last evaluation Detectron2 logged into the
    run's ``metrics.json``, or None."""
    last = None
    try:
        with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                bbox = {k: v for k, v in record.items() if k.startswith("bbox/")}
                if bbox:
                    last = (record.get("iteration"), bbox)
    except OSError:
        return None
    return last


def _configured_max_iter(output_dir):
    """``SOLVER.MAX_ITER`` of the config the run was started with (its ``config.yaml``), or None."""
    try:
        with open(os.path.join(output_dir, "config.yaml"), encoding="utf-8") as f:
            return int(yaml.safe_load(f)["SOLVER"]["MAX_ITER"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def has_no_detections(run, test_dataset):
    """True if the run trained to the end and its final evaluation found that the model makes
    no detection at all on ``test_dataset``: Detectron2's evaluator then writes an empty
    detections file, logs "No predictions from the model!", reports NaN for every metric
    (``metrics.json``: the evaluation at iteration ``SOLVER.MAX_ITER``) and our AP-by-size
    report is not written. All three pieces of evidence must be there: a NaN alone can also
    be a diverged model, which Detectron2 stops with an error long before."""
    if os.path.isfile(results_path(run, test_dataset)) or _json_or_none(predictions_path(run, test_dataset)) != []:
        return False
    final, max_iter = _final_evaluation(run.output_dir), _configured_max_iter(run.output_dir)
    if final is None or max_iter is None:
        return False
    iteration, metrics = final
    return iteration == max_iter and all(isinstance(v, float) and math.isnan(v) for v in metrics.values())


def run_finished(run, test_dataset):
    """A run is finished (a result) when its AP-by-size report exists, or when it trained to
    the end and its model made no detection (:func:`has_no_detections`: AP 0)."""
    return os.path.isfile(results_path(run, test_dataset)) or has_no_detections(run, test_dataset)


def _train(command, run, log_path, env, on_iter):
    """Runs one training, its output into ``log_path``; returns its exit code."""
    os.makedirs(run.output_dir, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            match = _ITER.search(line)
            if match:
                on_iter(int(match.group(1)))
    return proc.returncode


def _slot_env(slot, num_gpus):
    """The environment of a training in job slot ``slot``: GPU ``slot mod num_gpus`` of the
    parent's visible ones (``CUDA_VISIBLE_DEVICES``); with one GPU every slot shares it."""
    env = dict(os.environ)
    if num_gpus:
        visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        devices = visible[:num_gpus] if visible else [str(i) for i in range(num_gpus)]
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    return env


class _Progress:
    """A bar over runs whose postfix shows the iteration of every run in flight."""

    def __init__(self, total):
        self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, desc="study")
        self.iters, self.lock = {}, threading.Lock()

    def on_iter(self, label, it, max_iter):
        with self.lock:
            self.iters[label] = (it, max_iter)
            self.bar.set_postfix_str(", ".join(f"{k} iter {i}/{n}" for k, (i, n) in self.iters.items()))

    def finished(self, label, message):
        with self.lock:
            self.iters.pop(label, None)
            self.bar.write(message)
            self.bar.update(1)


def run_study(spec, train_command, test_dataset, max_iter, logger, jobs=1, num_gpus=0):
    """Trains every unfinished run of ``spec``; a finished run (:func:`run_finished`) is skipped,
    an interrupted one continues from its last checkpoint (``--resume``), a failed one is
    reported and the rest go on. A run whose model makes no detection is finished, not failed.

    Args:
        train_command: callable ``run -> argv`` of the training command for one run.
        test_dataset: the dataset whose evaluation marks a run as finished.
        max_iter: iterations per run (for the progress display) unless the run has a schedule.
        jobs: trainings at once; with ``num_gpus`` GPUs, job slot k trains on GPU k mod num_gpus.
    Returns:
        ``{run label: exit code}`` of the runs that failed.
    """
    runs = spec.runs()
    todo = [run for run in runs if not run_finished(run, test_dataset)]
    logger.info(f"Study: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to train, "
                f"{jobs} at a time")
    progress = _Progress(len(todo))
    slots = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    failed = {}

    def train_one(run):
        slot = slots.get()
        try:
            log_path = os.path.join(run.output_dir, "train_stdout.log")
            run_iters = run.schedule.max_iter if run.schedule else max_iter
            progress.on_iter(run.label, 0, run_iters)
            started = time.monotonic()
            code = _train(train_command(run), run, log_path, _slot_env(slot, num_gpus),
                          lambda it: progress.on_iter(run.label, it, run_iters))
            minutes = (time.monotonic() - started) / 60
        finally:
            slots.put(slot)
        if code != 0 or not run_finished(run, test_dataset):
            failed[run.label] = code
            progress.finished(run.label, f"FAILED {run.label} (exit {code}) after {minutes:.1f} min; "
                                         f"its output: {log_path}")
        elif has_no_detections(run, test_dataset):
            progress.finished(run.label, f"done {run.label} in {minutes:.1f} min: no detections (counted as AP 0)")
        else:
            progress.finished(run.label, f"done {run.label} in {minutes:.1f} min")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(train_one, todo))
    progress.bar.close()
    return failed
