#!/usr/bin/env python
"""Train arms x seeds one after the other and compare the arms with paired statistics.

    python tools/study.py --arm vanilla=configs/quick/faster_rcnn_r18_shapes.yaml \
        --arm lip=configs/quick/faster_rcnn_lip_r18_shapes.yaml \
        --arm "lip_in=configs/quick/faster_rcnn_lip_r18_shapes.yaml MODEL.LIP.LOGIT_NORM IN" \
        --seeds 5 --output output/studies/lip_vs_vanilla [KEY VALUE ...]
    python tools/study.py --study-file configs/studies/lip_vs_vanilla.yaml
    python tools/study.py --study-file configs/studies/schedule_sweep.yaml --threads 1 --jobs 2
    python tools/study.py --study-file configs/studies/schedule_sweep_gpu.yaml --jobs 6 MODEL.DEVICE cuda

Each (arm, seed) trains with tools/train_net.py in OUTPUT/<arm>/seed<k> (SEED k), --jobs of
them at a time (on a machine with several GPUs, slot k on GPU k mod #GPUs; with one GPU all
share it); finished runs are skipped, interrupted ones resume. A run whose model makes no
detection is a result (AP 0 where there is ground truth), counted per arm, not a failure.
The comparison (mean ± std per arm, each arm minus the baseline arm paired by seed with a t
interval) is logged and written to OUTPUT/study.{json,csv} and PNG charts.

With schedule lengths (--schedules 400,1600 or 1x,4x, or 'schedules:' in the study file), every
arm x seed trains once per length, SOLVER.MAX_ITER / STEPS / WARMUP_ITERS of the configs scaled
together (steps at the same fractions; warmup fixed, shrunk only below the configs' length), in
OUTPUT/iter<N>/<arm>/seed<k>. Each length gets the study reports above in OUTPUT/iter<N>/, and
the sweep (differences against the baseline per metric and length) is logged and written to
OUTPUT/sweep.{json,csv,md} and OUTPUT/sweep_differences.png.
"""
import argparse
import os
import sys

import torch
from detectron2.utils.logger import setup_logger

from lip_lab.cli import INPUT_ERRORS, add_register_coco_argument, load_config, register_user_datasets, reports_input_errors
from lip_lab.data.user_coco import check_num_classes
from lip_lab.study import (
    Schedule,
    StudyError,
    StudySpec,
    aggregate,
    aggregate_sweep,
    collect_results,
    format_no_detections,
    format_study_table,
    format_sweep_counts,
    format_sweep_table,
    load_study_file,
    no_detection_runs,
    parse_arm,
    parse_schedules,
    run_study,
    seed_list,
    write_study_reports,
    write_sweep_reports,
)

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", action="append", default=[], metavar="'NAME=CONFIG [KEY VALUE ...]'",
                        help="an arm: a name, its config file and its own overrides (repeatable)")
    parser.add_argument("--study-file", help="YAML study file (arms, seeds, output, baseline, opts)")
    parser.add_argument("--seeds", type=int, help="seeds 1..N per arm (default 5, or the study file's)")
    parser.add_argument("--output", help="study folder (runs in OUTPUT/<arm>/seed<k>)")
    parser.add_argument("--baseline", help="arm the others are compared with (default: the first)")
    parser.add_argument("--schedules", metavar="N[,N...]",
                        help="schedule lengths, comma-separated: iterations (400,1600) or factors of the configs' "
                        "SOLVER.MAX_ITER (1x,4x); every arm x seed trains once per length in OUTPUT/iter<N>/ "
                        "(default: the study file's 'schedules', else the configs' schedule only)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals")
    parser.add_argument("--threads", type=int, help="CPU threads per training (OMP_NUM_THREADS); "
                        "fix it for reproducible runs: AP depends on the thread count")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1); on a machine "
                        "with GPUs, one GPU each; on a CPU, give each --threads cores")
    parser.add_argument("--report-only", action="store_true", help="aggregate finished runs, train nothing")
    add_register_coco_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every arm")
    return parser.parse_args(argv)


def build_spec(args):
    if args.study_file:
        if args.arm:
            raise StudyError("give the arms either with --arm or in --study-file, not both")
        spec = load_study_file(args.study_file, args.output)
        seeds = seed_list(args.seeds) if args.seeds else spec.seeds
        schedules = parse_schedules(args.schedules) if args.schedules else spec.schedules
        return StudySpec(spec.arms, seeds, spec.output_dir, (*spec.opts, *args.opts), args.baseline or spec.baseline,
                         schedules=schedules)
    if not args.output:
        raise StudyError("--output DIR is required (or 'output:' in a --study-file)")
    arms = [parse_arm(text) for text in args.arm]
    return StudySpec(arms, seed_list(args.seeds or 5), args.output, tuple(args.opts), args.baseline,
                     schedules=parse_schedules(args.schedules or ""))


def check_arms(spec):
    """Loads every arm's config once (one-line error on a bad key or value, or a class count
    that differs from a dataset's) and returns the test dataset and the configs' schedule
    (:class:`Schedule`), which all arms must share to be comparable: ``SOLVER.MAX_ITER``, and in
    a schedule sweep, which scales it, ``STEPS`` and ``WARMUP_ITERS`` too. In a sweep, every
    scaled schedule is checked as well."""
    shapes = {}
    for arm in spec.arms:
        try:
            cfg = load_config(arm.config_file, [*spec.opts, *arm.opts])
            check_num_classes(cfg, [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST])
        except INPUT_ERRORS as exc:
            raise StudyError(f"arm {arm.name!r}: {exc}") from None
        schedule = Schedule.from_cfg(cfg)
        shapes[arm.name] = (tuple(cfg.DATASETS.TEST), schedule if spec.schedules else schedule.max_iter)
    if len(set(shapes.values())) > 1:
        shared = "SOLVER.MAX_ITER, STEPS and WARMUP_ITERS (a schedule sweep scales them)" if spec.schedules \
            else "SOLVER.MAX_ITER"
        raise StudyError(f"arms must share DATASETS.TEST and {shared} to be compared: {shapes}")
    test = next(iter(shapes.values()))[0]
    if not test:
        raise StudyError("DATASETS.TEST is empty: a study compares the arms' test AP")
    spec.base_schedule = schedule
    spec.sub_studies()  # in a sweep: raises if a length cannot hold the configs' lr steps, scaled
    return test[0], schedule


def train_command(spec, register_coco):
    registrations = [item for triple in register_coco for item in ("--register-coco", *triple)]

    def command(run):
        return [sys.executable, TRAIN_NET, "--config-file", run.arm.config_file, "--resume", *registrations,
                *spec.run_opts(run)]

    return command


@reports_input_errors
def main(argv=None):
    args = parse_args(argv)
    if args.jobs < 1:
        raise StudyError(f"--jobs must be at least 1, got {args.jobs}")
    register_user_datasets(args)
    spec = build_spec(args)
    test_dataset, base_schedule = check_arms(spec)
    os.makedirs(spec.output_dir, exist_ok=True)
    logger = setup_logger(os.path.join(spec.output_dir, "study_log.txt"), name="lip_lab.study", abbrev_name="study")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    failed = {}
    if not args.report_only:
        num_gpus = torch.cuda.device_count() if args.jobs > 1 else 0
        if spec.schedules:
            logger.info("Schedules (the configs' scaled): " + "; ".join(
                f"{sub.schedule.max_iter} iterations: steps {list(sub.schedule.steps)}, warmup "
                f"{sub.schedule.warmup_iters}" for sub in spec.sub_studies()))
        failed = run_study(spec, train_command(spec, args.register_coco), test_dataset, base_schedule.max_iter,
                           logger, jobs=args.jobs, num_gpus=num_gpus)
    studies = {}
    for sub in spec.sub_studies():
        results = collect_results(sub, test_dataset)
        if not any(results.values()):
            continue
        study = aggregate(results, sub.baseline, args.confidence, no_detection_runs(sub, test_dataset))
        study["threads"] = os.environ.get("OMP_NUM_THREADS")
        if sub.schedule:
            study["schedule"] = {"max_iter": sub.schedule.max_iter, "steps": list(sub.schedule.steps),
                                 "warmup_iters": sub.schedule.warmup_iters}
        paths = write_study_reports(sub, results, study, sub.output_dir)
        where = f", {sub.schedule.max_iter} iterations" if sub.schedule else ""
        logger.info(f"Study on {test_dataset}{where} (AP in %, mean ± std over seeds):\n{format_study_table(study)}\n"
                    f"{format_no_detections(study)}")
        logger.info("Written: " + ", ".join(paths.values()))
        studies[sub.schedule.max_iter if sub.schedule else None] = study
    if not studies:
        raise StudyError(f"no finished run in {spec.output_dir}; nothing to compare")
    if spec.schedules:
        sweep = aggregate_sweep(studies)
        header = (f"Schedule sweep on {test_dataset}: each arm minus {sweep['baseline']}, paired by seed, "
                  f"{round(args.confidence * 100)}% Student-t interval (`*`: excludes 0), AP in %")
        paths = write_sweep_reports(sweep, spec.output_dir, header)
        logger.info(f"{header}:\n{format_sweep_table(sweep)}\nSeeds per arm and schedule (runs without detections, "
                    f"counted as AP 0):\n{format_sweep_counts(sweep)}")
        logger.info("Written: " + ", ".join(paths.values()))
    if failed:
        logger.error(f"{len(failed)} run(s) failed: {', '.join(failed)}; re-run the same command to retry them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
