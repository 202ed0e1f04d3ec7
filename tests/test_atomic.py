"""atomic_open: a file appears complete, with the permissions a plain open() would give."""
import os

import pytest

from lip_lab.utils.atomic import atomic_open


def test_atomic_file_has_plain_open_permissions_and_survives_a_crash(tmp_path):
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    with atomic_open(tmp_path / "atomic.txt") as f:
        f.write("first")
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt")
    with pytest.raises(RuntimeError), atomic_open(tmp_path / "atomic.txt") as f:
        f.write("second, cut short")
        raise RuntimeError
    assert (tmp_path / "atomic.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]
