"""The benchmark scripts run and write the JSON they promise (speed itself is judged by reading them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
KEYS = {"operator", "size", "forward_ms", "adjoint_ms", "peer", "peer_ms", "ratio", "adjoint_rel_error"}


def test_operator_benchmark_writes_a_row_per_operator_and_peer(tmp_path):
    out = tmp_path / "ops.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/operators.py"),
            "--quick",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert {r["operator"] for r in rows} == {"mri-multicoil", "ct-parallel", "blind-deconv"}
    for r in rows:
        assert set(r) >= KEYS
        assert r["adjoint_rel_error"] < 1e-5
        assert r["peer_ms"] > 0
        assert r["ratio"] == pytest.approx(
            (r["forward_ms"] + r["adjoint_ms"]) / r["peer_ms"], rel=0.02, abs=1e-3
        )
    assert "sigpy Sense" in proc.stdout and "skimage radon/iradon" in proc.stdout
