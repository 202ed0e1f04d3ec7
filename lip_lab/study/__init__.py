"""Studies: arms (configs) x seeds (x schedule lengths) trained one after the other, compared with
paired statistics."""
from .report import (
    aggregate,
    collect_results,
    format_no_detections,
    format_study_table,
    no_detection_runs,
    no_detection_size_ap,
    write_study_reports,
)
from .runner import has_no_detections, results_path, run_finished, run_study
from .spec import Arm, Run, Schedule, StudyError, StudySpec, load_study_file, parse_arm, parse_schedules, seed_list
from .stats import PairedDifference, Summary, paired_difference, summarize
from .sweep import aggregate_sweep, format_sweep_counts, format_sweep_table, plot_sweep, write_sweep_reports

__all__ = [k for k in globals().keys() if not k.startswith("_")]
