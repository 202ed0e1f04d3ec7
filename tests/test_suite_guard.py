"""Without Detectron2 the suite must fail with an install hint, never skip."""
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_suite_fails_loudly_without_detectron2(tmp_path):
    shadow = tmp_path / "detectron2"
    shadow.mkdir()
    (shadow / "__init__.py").write_text('raise ImportError("No module named detectron2")\n')
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_lip2d.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Detectron2 is not importable" in output and "no-build-isolation" in output
    assert "passed" not in output and "skipped" not in output
