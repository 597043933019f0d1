"""The examples run and print the numbers they promise."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                            timeout=120, check=True)
    return result.stdout


def test_quickstart_prints_the_seed_numbers():
    """The quick start prints the per-chip matmul FLOPs 2 * 2 * 512 * 4096 * 8192."""
    out = run("quickstart.py")
    assert f"{2 * 2 * 512 * 4096 * 8192:,}" in out
    # training, t = 4: 12 b s h f / t = 12 * 8 * 4096 * 4096 * 14336 / 4
    assert f"{12 * 8 * 4096 * 4096 * 14336 // 4:,}" in out
