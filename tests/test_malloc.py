"""keep_freed_memory: glibc keeps a freed large block in the process instead of unmapping it."""
import platform
import subprocess
import sys

import pytest

_RESIDENT_AFTER_FREE = """
import os, sys, torch
from lip_lab.utils.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident_mib()
block = torch.ones(64 * 2**20)  # 256 MiB, every page touched
del block
print(resident_mib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
@pytest.mark.parametrize("mode, kept", [("default", False), ("keep", True)])
def test_a_freed_block_stays_resident_only_when_kept(mode, kept):
    proc = subprocess.run([sys.executable, "-c", _RESIDENT_AFTER_FREE, mode], capture_output=True, text=True, check=True)
    resident = float(proc.stdout.split()[-1])
    assert (resident > 200) == kept, resident
