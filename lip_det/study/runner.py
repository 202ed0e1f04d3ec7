"""Runs a study's trainings one after the other, each through the normal training command."""
import os
import re
import subprocess
import time

from tqdm import tqdm

__all__ = ["RESULTS_NAME", "results_path", "run_study"]

RESULTS_NAME = "ap_by_size_bbox.json"
_ITER = re.compile(r"\biter: (\d+)\b")


def results_path(run, test_dataset):
    """Where a finished run's AP-by-size JSON is (written by the evaluator at the end)."""
    return os.path.join(run.output_dir, "inference", test_dataset, RESULTS_NAME)


def _train(command, run, log_path, on_iter):
    """Runs one training, its output into ``log_path``; returns its exit code."""
    os.makedirs(run.output_dir, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log, subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            match = _ITER.search(line)
            if match:
                on_iter(int(match.group(1)))
    return proc.returncode


def run_study(spec, train_command, test_dataset, max_iter, logger):
    """Trains every unfinished run of ``spec``; a finished run is skipped, an interrupted one
    continues from its last checkpoint (``--resume``), a failed one is reported and the rest go on.

    Args:
        train_command: callable ``run -> argv`` of the training command for one run.
        test_dataset: the dataset whose AP-by-size JSON marks a run as finished.
        max_iter: iterations per run (for the progress display).
    Returns:
        ``{run label: exit code}`` of the runs that failed.
    """
    runs = spec.runs()
    todo = [run for run in runs if not os.path.isfile(results_path(run, test_dataset))]
    logger.info(f"Study: {len(runs)} runs, {len(runs) - len(todo)} finished, {len(todo)} to train")
    failed = {}
    bar = tqdm(total=len(todo), unit="run", dynamic_ncols=True, desc="study")
    for run in todo:
        log_path = os.path.join(run.output_dir, "train_stdout.log")

        def on_iter(it, run=run):
            bar.set_postfix_str(f"{run.label} iter {it}/{max_iter}")

        on_iter(0)
        started = time.monotonic()
        code = _train(train_command(run), run, log_path, on_iter)
        minutes = (time.monotonic() - started) / 60
        if code != 0 or not os.path.isfile(results_path(run, test_dataset)):
            failed[run.label] = code
            bar.write(f"FAILED {run.label} (exit {code}) after {minutes:.1f} min; its output: {log_path}")
        else:
            bar.write(f"done {run.label} in {minutes:.1f} min")
        bar.update(1)
    bar.close()
    return failed
