#!/usr/bin/env python
"""Compares the installed packages with requirements.txt and installs what is needed.

    python tools/check_env.py              # report only; exit status 1 if anything is missing
    python tools/check_env.py --install    # make install: installs what is missing or of another version

An installed torch or torchvision is never replaced (Detectron2 is compiled against it): pip gets
it as a constraint, and a version other than requirements.txt's is only reported. Detectron2 (not
on PyPI) is installed from ``--detectron2`` (its git URL) when missing, and this checkout in editable
mode with its lab extra (``pip install -e '.[lab]'``: the packages lip_det and lip_lab). Every pip command is printed before it runs. Standard library and pip only: it
runs before anything else is installed.
"""
import argparse
import importlib.metadata
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh environment: pip ships packaging
    from pip._vendor.packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
KEEP_INSTALLED = ("torch", "torchvision")
DETECTRON2_GIT = "git+https://github.com/facebookresearch/detectron2.git"


def read_requirements(path=REPO / "requirements.txt"):
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def status(requirement):
    """(installed version or None, "ok" / "missing" / "mismatch")."""
    version = installed_version(requirement.name)
    if version is None:
        return None, "missing"
    return version, "ok" if requirement.specifier.contains(version, prereleases=True) else "mismatch"


def report(requirements):
    """Prints one line per requirement; returns the requirements by status."""
    by_status = {"ok": [], "missing": [], "mismatch": []}
    for req in requirements:
        version, state = status(req)
        by_status[state].append(req)
        note = ""
        if state == "mismatch":
            note = " (kept: Detectron2 is built against it)" if req.name in KEEP_INSTALLED else ""
        print(f"  {req.name:24} required {str(req.specifier):26} installed {version or '-':22} {state}{note}")
    return by_status


def pip_install(args, what):
    """``pip install args`` with every installed KEEP_INSTALLED package pinned as a constraint."""
    print(f"installing {what}: pip install {' '.join(args)}", flush=True)
    pins = [f"{name}=={installed_version(name)}" for name in KEEP_INSTALLED if installed_version(name)]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        constraints.write("\n".join(pins) + "\n")
        constraints.flush()
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-c", constraints.name, *args])


def installed_from_here(package):
    """Whether ``import <package>`` outside this folder imports this checkout (-I: ignore the working directory)."""
    code = f"import importlib.util as u; s = u.find_spec({package!r}); print(s.origin if s else '')"
    origin = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True).stdout.strip()
    return bool(origin) and Path(origin).resolve().parents[1] == REPO


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true", help="install what is missing or of another version")
    parser.add_argument("--detectron2", default=DETECTRON2_GIT, metavar="SRC", help="where Detectron2 installs from")
    args = parser.parse_args()
    requirements = read_requirements()
    print(f"{sys.executable}, against {REPO / 'requirements.txt'}:")
    by_status = report(requirements)
    if args.install:
        todo = by_status["missing"] + [r for r in by_status["mismatch"] if r.name not in KEEP_INSTALLED]
        if todo:
            pip_install([str(r) for r in todo], "requirements")
        if importlib.util.find_spec("detectron2") is None:
            pip_install(["--no-build-isolation", args.detectron2], "Detectron2 from source")
        if not all(installed_from_here(package) for package in ("lip_det", "lip_lab")):
            pip_install(["--no-build-isolation", "-e", f"{REPO}[lab]"], "lip_det and lip_lab from this checkout")
        importlib.invalidate_caches()
        if todo:
            print("now:")
            by_status = report(requirements)
    detectron2 = installed_version("detectron2")
    print(f"  {'detectron2':24} " + (f"installed {detectron2}" if detectron2 else f"missing (source: {args.detectron2})"))
    return 1 if by_status["missing"] or not detectron2 else 0


if __name__ == "__main__":
    sys.exit(main())
