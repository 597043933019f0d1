"""examples/hybrid_mamba2.py runs and prints the constant Mamba-2 state cache."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hybrid_mamba2.py"


def test_hybrid_example_state_cache_is_constant():
    """mamba2-2.7b keeps 64 x 8 x (3*5376 + 80*64*128) x 2 = 687,603,712 bytes at every context;
    the hybrid's cache grows (4 attention layers) but less than Llama-3-8B's (32)."""
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("s =")]
    assert len(rows) == 3
    assert all("mamba2-2.7b     687,603,712 B" in row for row in rows)
    assert "2,702,599,680 parameters" in out
