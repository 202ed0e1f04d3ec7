"""Studies: arms (configs) x seeds trained one after the other, compared with paired statistics."""
from .report import aggregate, collect_results, format_study_table, write_study_reports
from .runner import results_path, run_study
from .spec import Arm, Run, StudyError, StudySpec, load_study_file, parse_arm, seed_list
from .stats import PairedDifference, Summary, paired_difference, summarize

__all__ = [k for k in globals().keys() if not k.startswith("_")]
