"""What a study runs: arms (a config plus overrides) x seeds (x schedule lengths), each in its own
output folder."""
import math
import os
import shlex
from dataclasses import dataclass

import yaml

from ..errors import UsageError

__all__ = [
    "StudyError", "Arm", "Run", "Schedule", "StudySpec", "parse_arm", "load_study_file", "seed_list",
    "parse_schedules", "schedule_dir",
]


class StudyError(UsageError):
    """A study description is inconsistent; the message names the problem and the fix."""


@dataclass(frozen=True)
class Arm:
    """A name, a YAML config file and ``KEY VALUE`` overrides of that config."""

    name: str
    config_file: str
    opts: tuple = ()


@dataclass(frozen=True)
class Schedule:
    """A training schedule: ``SOLVER.MAX_ITER``, ``SOLVER.STEPS`` and ``SOLVER.WARMUP_ITERS``."""

    max_iter: int
    steps: tuple = ()
    warmup_iters: int = 0

    @classmethod
    def from_cfg(cls, cfg):
        solver = cfg.SOLVER
        return cls(int(solver.MAX_ITER), tuple(int(s) for s in solver.STEPS), int(solver.WARMUP_ITERS))

    def scaled(self, max_iter):
        """This schedule stretched (or shrunk) to ``max_iter`` iterations.

        The lr steps stay at the same fractions of ``MAX_ITER`` (rounded to whole iterations).
        Warmup stays fixed in iterations for schedules at least as long as this one (it guards
        the first updates of a model trained from scratch at the base lr, which do not change
        with the schedule's length; Detectron2's 1x and 3x COCO schedules keep the same 1,000
        warmup iterations too) and shrinks in proportion for shorter ones, so that it keeps the
        same share of the run and still ends before the first step.
        """
        ratio = max_iter / self.max_iter
        steps = tuple(round(s * ratio) for s in self.steps if s < self.max_iter)
        if any(not 0 < s < max_iter for s in steps) or len(set(steps)) != len(steps):
            raise StudyError(
                f"a {max_iter}-iteration schedule cannot keep SOLVER.STEPS {list(self.steps)} of "
                f"{self.max_iter} iterations apart (scaled: {list(steps)}); use a longer schedule"
            )
        warmup = self.warmup_iters if ratio >= 1 else round(self.warmup_iters * ratio)
        return Schedule(int(max_iter), steps, warmup)

    def opts(self):
        """``KEY VALUE`` config overrides that set this schedule."""
        return ["SOLVER.MAX_ITER", str(self.max_iter), "SOLVER.STEPS", repr(tuple(self.steps)),
                "SOLVER.WARMUP_ITERS", str(self.warmup_iters)]


def schedule_dir(max_iter):
    """Folder of a schedule's runs inside a study's output folder: ``iter<MAX_ITER>``."""
    return f"iter{max_iter}"


@dataclass(frozen=True)
class Run:
    """One training: an arm with one seed (and, in a schedule sweep, one schedule), in ``output_dir``."""

    arm: Arm
    seed: int
    output_dir: str
    schedule: Schedule = None

    @property
    def label(self):
        prefix = f"{schedule_dir(self.schedule.max_iter)}/" if self.schedule else ""
        return f"{prefix}{self.arm.name}/seed{self.seed}"


@dataclass
class StudySpec:
    """Arms x seeds; ``opts`` apply to every arm (before the arm's own); the baseline arm is
    the one every other arm is compared with (default: the first).

    A schedule sweep also has ``schedules`` (see :func:`parse_schedules`: iterations, or ``"Nx"``
    factors of ``base_schedule.max_iter``): every arm x seed then trains once per schedule
    length, the configs' schedule (``base_schedule``, set once the configs are loaded) scaled
    to it (:meth:`Schedule.scaled`), in ``output_dir/iter<N>/<arm>/seed<k>``. Each schedule
    length is a study of its own (:meth:`sub_studies`), whose ``schedule`` is set.
    """

    arms: list
    seeds: list
    output_dir: str
    opts: tuple = ()
    baseline: str = None
    schedules: tuple = ()
    base_schedule: Schedule = None
    schedule: Schedule = None

    def __post_init__(self):
        names = [arm.name for arm in self.arms]
        if len(names) < 1:
            raise StudyError("a study needs at least one arm: --arm NAME=CONFIG")
        if len(set(names)) != len(names):
            raise StudyError(f"arm names must be distinct, got {names}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise StudyError(f"seeds must be distinct and at least one, got {self.seeds}")
        if len(self.opts) % 2:
            raise StudyError(f"overrides must come as KEY VALUE pairs, got {list(self.opts)}")
        self.baseline = self.baseline or names[0]
        if self.baseline not in names:
            raise StudyError(f"baseline arm {self.baseline!r} is not one of the arms {names}")
        for arm in self.arms:
            if not os.path.isfile(arm.config_file):
                raise StudyError(f"arm {arm.name!r}: config file not found: {arm.config_file}")
        self.schedules = tuple(parse_schedules(self.schedules))

    def schedule_lengths(self):
        """The sweep's schedule lengths in iterations, shortest first (needs ``base_schedule``
        for ``"Nx"`` entries); [] without a schedule axis."""
        if not self.schedules:
            return []
        if self.base_schedule is None:
            raise StudyError("a schedule sweep needs the configs' schedule: set base_schedule first")
        lengths = {s if isinstance(s, int) else max(1, round(self.base_schedule.max_iter * float(s[:-1])))
                   for s in self.schedules}
        return sorted(lengths)

    def sub_studies(self):
        """One plain study per schedule length (shortest first), in ``output_dir/iter<N>``;
        ``[self]`` without a schedule axis."""
        if not self.schedules:
            return [self]
        return [
            StudySpec(self.arms, self.seeds, os.path.join(self.output_dir, schedule_dir(n)), self.opts, self.baseline,
                      schedule=self.base_schedule.scaled(n))
            for n in self.schedule_lengths()
        ]

    def runs(self):
        """Every (arm, seed), seed-major: an unfinished study still has complete pairs; in a
        schedule sweep, every schedule's runs, shortest schedule first."""
        if self.schedules:
            return [run for sub in self.sub_studies() for run in sub.runs()]
        return [
            Run(arm, seed, os.path.join(self.output_dir, arm.name, f"seed{seed}"), self.schedule)
            for seed in self.seeds
            for arm in self.arms
        ]

    def run_opts(self, run):
        """Config overrides of one run: study-wide, the arm's, its schedule, then its folder and seed."""
        schedule = run.schedule.opts() if run.schedule else []
        return [*self.opts, *run.arm.opts, *schedule, "OUTPUT_DIR", run.output_dir, "SEED", str(run.seed)]


def parse_arm(text):
    """``"NAME=CONFIG [KEY VALUE ...]"`` (shell-quoted, as on the command line) -> :class:`Arm`."""
    tokens = shlex.split(text)
    name, sep, config_file = (tokens[0] if tokens else "").partition("=")
    if not (name and sep and config_file) or len(tokens[1:]) % 2:
        raise StudyError(
            f"--arm {text!r} is not valid; write --arm 'NAME=CONFIG [KEY VALUE ...]', "
            "e.g. --arm 'lip_in=configs/quick/faster_rcnn_lip_r18_shapes.yaml MODEL.LIP.LOGIT_NORM IN'"
        )
    return Arm(name, config_file, tuple(tokens[1:]))


def _opts_from_mapping(mapping, where):
    if mapping is None:
        return ()
    if not isinstance(mapping, dict):
        raise StudyError(f"{where}: 'opts' must be a mapping of KEY: VALUE")
    return tuple(item for key, value in mapping.items() for item in (str(key), _yaml_value(value)))


def _yaml_value(value):
    # Config overrides are literal-evaluated by yacs: give lists and tuples in Python syntax.
    return repr(tuple(value)) if isinstance(value, (list, tuple)) else str(value)


def load_study_file(path, output_dir=None):
    """A :class:`StudySpec` from a YAML study file.

    ``arms: {NAME: {config: FILE, opts: {KEY: VALUE}}}``, ``seeds: N or [s, ...]``,
    optional ``output``, ``baseline``, study-wide ``opts`` and ``schedules`` (a list of
    iteration counts and/or ``"Nx"`` factors of the configs' ``SOLVER.MAX_ITER``, see
    :func:`parse_schedules`). Config paths are relative to the study file; ``output_dir``
    overrides ``output``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise StudyError(f"study file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise StudyError(f"study file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("arms"), dict):
        raise StudyError(f"study file {path}: needs 'arms: {{NAME: {{config: FILE}}}}'")
    here = os.path.dirname(os.path.abspath(path))
    arms = []
    for name, body in data["arms"].items():
        body = {"config": body} if isinstance(body, str) else body
        if not isinstance(body, dict) or "config" not in body:
            raise StudyError(f"study file {path}: arm {name!r} needs 'config: FILE'")
        config_file = os.path.normpath(os.path.join(here, body["config"]))
        arms.append(Arm(str(name), config_file, _opts_from_mapping(body.get("opts"), f"arm {name!r}")))
    output = output_dir or data.get("output")
    if not output:
        raise StudyError(f"study file {path}: give 'output: DIR' in the file or --output DIR")
    return StudySpec(
        arms=arms,
        seeds=seed_list(data.get("seeds", 5)),
        output_dir=output,
        opts=_opts_from_mapping(data.get("opts"), "study"),
        baseline=data.get("baseline"),
        schedules=_schedules_from_file(data.get("schedules"), path),
    )


def _schedules_from_file(value, path):
    if value is None:
        return ()
    if not isinstance(value, list):
        raise StudyError(f"study file {path}: 'schedules' must be a list, e.g. [400, 1600] or [1x, 4x]")
    return tuple(value)


def parse_schedules(entries):
    """Schedule lengths as given: a positive iteration count (``400``) or a positive factor of
    the configs' ``SOLVER.MAX_ITER`` written ``"4x"`` (or ``"0.5x"``). A string (``"400,1600"``,
    as on the command line) is split at commas. Returns a list of ints and ``"<float>x"`` strings."""
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    parsed = []
    for entry in entries:
        text = str(entry).strip()
        try:
            if isinstance(entry, bool):
                raise ValueError
            if text.lower().endswith("x"):
                factor = float(text[:-1])
                if not (factor > 0 and math.isfinite(factor)):
                    raise ValueError
                parsed.append(f"{factor:g}x")
            else:
                count = int(text)
                if count < 1 or str(count) != text.lstrip("+"):
                    raise ValueError
                parsed.append(count)
        except ValueError:
            raise StudyError(
                f"schedule {entry!r} is not valid; give iterations (400) or a factor of SOLVER.MAX_ITER (4x)"
            ) from None
    if not parsed and entries:
        raise StudyError("schedules: give at least one schedule length")
    return parsed


def seed_list(seeds):
    """``N`` -> seeds 1..N; a list is kept as given."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)) or (isinstance(seeds, int) and seeds < 1):
        raise StudyError(f"seeds = {seeds!r} is not valid; give a positive count or a list of integers")
    return list(range(1, seeds + 1)) if isinstance(seeds, int) else [int(s) for s in seeds]
