"""What a study runs: arms (a config plus overrides) x seeds, each in its own output folder."""
import os
import shlex
from dataclasses import dataclass

import yaml

from ..errors import UsageError

__all__ = ["StudyError", "Arm", "Run", "StudySpec", "parse_arm", "load_study_file", "seed_list"]


class StudyError(UsageError):
    """A study description is inconsistent; the message names the problem and the fix."""


@dataclass(frozen=True)
class Arm:
    """A name, a YAML config file and ``KEY VALUE`` overrides of that config."""

    name: str
    config_file: str
    opts: tuple = ()


@dataclass(frozen=True)
class Run:
    """One training: an arm with one seed, in ``output_dir``."""

    arm: Arm
    seed: int
    output_dir: str

    @property
    def label(self):
        return f"{self.arm.name}/seed{self.seed}"


@dataclass
class StudySpec:
    """Arms x seeds; ``opts`` apply to every arm (before the arm's own); the baseline arm is
    the one every other arm is compared with (default: the first)."""

    arms: list
    seeds: list
    output_dir: str
    opts: tuple = ()
    baseline: str = None

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

    def runs(self):
        """Every (arm, seed), seed-major: an unfinished study still has complete pairs."""
        return [
            Run(arm, seed, os.path.join(self.output_dir, arm.name, f"seed{seed}"))
            for seed in self.seeds
            for arm in self.arms
        ]

    def run_opts(self, run):
        """Config overrides of one run: study-wide, the arm's, then its folder and seed."""
        return [*self.opts, *run.arm.opts, "OUTPUT_DIR", run.output_dir, "SEED", str(run.seed)]


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
    optional ``output``, ``baseline`` and study-wide ``opts``. Config paths are relative
    to the study file; ``output_dir`` overrides ``output``.
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
    )


def seed_list(seeds):
    """``N`` -> seeds 1..N; a list is kept as given."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list)) or (isinstance(seeds, int) and seeds < 1):
        raise StudyError(f"seeds = {seeds!r} is not valid; give a positive count or a list of integers")
    return list(range(1, seeds + 1)) if isinstance(seeds, int) else [int(s) for s in seeds]
