"""The short form of bench/soak_api.py: gunicorn (2 workers), 3,000 mixed requests, every answer checked."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # gunicorn and 3,000 requests: about 10 s

ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_under_gunicorn_has_no_wrong_answer(trained, catalog_csv):
    command = [sys.executable, str(ROOT / "bench" / "soak_api.py"), "--requests", "3000", "--max-seconds", "120",
               "--data", str(catalog_csv), "--model-dir", str(trained[0])]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "errors: 0" in result.stdout and "wrong answers: 0" in result.stdout
    assert "FAIL" not in result.stdout and "workers restarted: no" in result.stdout
