"""Runs a study's trainings, each through the normal training command, ``jobs`` at a time."""
import os
import queue
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

__all__ = ["RESULTS_NAME", "results_path", "run_study"]

RESULTS_NAME = "ap_by_size_bbox.json"
_ITER = re.compile(r"\biter: (\d+)\b")


def results_path(run, test_dataset):
    """Where a finished run's AP-by-size JSON is (written by the evaluator at the end)."""
    return os.path.join(run.output_dir, "inference", test_dataset, RESULTS_NAME)


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
    """The environment of a training in job slot ``slot``: its own GPU when there are enough
    (``CUDA_VISIBLE_DEVICES=slot``), else the parent's."""
    env = dict(os.environ)
    if num_gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % num_gpus)
    return env


class _Progress:
    """A bar over runs whose postfix shows the iteration of every run in flight."""

    def __init__(self, total, max_iter):
        self.bar = tqdm(total=total, unit="run", dynamic_ncols=True, desc="study")
        self.max_iter, self.iters, self.lock = max_iter, {}, threading.Lock()

    def on_iter(self, label, it):
        with self.lock:
            self.iters[label] = it
            self.bar.set_postfix_str(", ".join(f"{k} iter {v}/{self.max_iter}" for k, v in self.iters.items()))

    def finished(self, label, message):
        with self.lock:
            self.iters.pop(label, None)
            self.bar.write(message)
            self.bar.update(1)


def run_study(spec, train_command, test_dataset, max_iter, logger, jobs=1, num_gpus=0):
    """Trains every unfinished run of ``spec``; a finished run is skipped, an interrupted one
    continues from its last checkpoint (``--resume``), a failed one is reported and the rest go on.

    Args:
        train_command: callable ``run -> argv`` of the training command for one run.
        test_dataset: the dataset whose AP-by-size JSON marks a run as finished.
        max_iter: iterations per run (for the progress display).
        jobs: trainings at once; with ``num_gpus`` GPUs, job slot k trains on GPU k mod num_gpus.
    Returns:
        ``{run label: exit code}`` of the runs that failed.
    """
    runs = spec.runs()
    todo = [run for run in runs if not os.path.isfile(results_path(run, test_dataset))]
    logger.info(f"Study: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to train, "
                f"{jobs} at a time")
    progress = _Progress(len(todo), max_iter)
    slots = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    failed = {}

    def train_one(run):
        slot = slots.get()
        try:
            log_path = os.path.join(run.output_dir, "train_stdout.log")
            progress.on_iter(run.label, 0)
            started = time.monotonic()
            code = _train(train_command(run), run, log_path, _slot_env(slot, num_gpus),
                          lambda it: progress.on_iter(run.label, it))
            minutes = (time.monotonic() - started) / 60
        finally:
            slots.put(slot)
        if code != 0 or not os.path.isfile(results_path(run, test_dataset)):
            failed[run.label] = code
            progress.finished(run.label, f"FAILED {run.label} (exit {code}) after {minutes:.1f} min; "
                                         f"its output: {log_path}")
        else:
            progress.finished(run.label, f"done {run.label} in {minutes:.1f} min")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(train_one, todo))
    progress.bar.close()
    return failed
