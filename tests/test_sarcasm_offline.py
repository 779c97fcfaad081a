"""The README's first command runs with no network, no data flag and a fresh HOME (issue 7, item 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _offline_prefix() -> list[str]:
    """`unshare -n` (a new network namespace with no interfaces) when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def test_default_job_runs_offline_from_the_shipped_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_DATA", "XDG_CACHE_HOME", "HARNESS_DB")}
    # Without `unshare -n`, every HTTP(S) request goes to a dead proxy (no host is exempt: NO_PROXY="*" exempted all).
    dead = "http://127.0.0.1:9"
    env.update(HOME=str(home), NO_PROXY="", no_proxy="", http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead,
               HTTPS_PROXY=dead, ALL_PROXY=dead, all_proxy=dead)
    cmd = [*_offline_prefix(), sys.executable, "-m", "harness.cli", "run", "--task", "sarcasm", "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").glob("sarcasm-tfidf-*")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_samples"] == 690 and metrics["n_errors"] == 0
    assert 0.60 <= metrics["metrics"]["weighted_f1"]["value"] <= 0.73  # the text-SVM range
    assert not (home / ".cache").exists()  # nothing fetched into the user cache
