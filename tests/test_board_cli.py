"""The README's two board commands as a user types them: `harness board serve` (a real process, with a
token file) and `harness submit` of a `harness run` folder; and the token file's checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.board.app import load_tokens, token_hash
from harness.cli import main as harness_main
from harness.core import HarnessError
from harness.runner import RunConfig, RunSettings, run

TOKEN = "alice-token-0123456789abcdef"
SERVE = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"  # the `harness` script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_board_serve_and_submit_as_the_readme_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokens.txt").write_text(f"# submitter token\nalice {TOKEN}\n")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "board", "serve", "--token-file", "tokens.txt",
                             "--port", str(port), "--bootstrap", "100"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "HARNESS_DB"})
    url = f"http://127.0.0.1:{port}"
    try:
        run_dir = run(RunConfig(task="sarcasm", solver="tfidf", n_boot=100),
                      RunSettings(out_dir=tmp_path / "runs", db_url=None, show_progress=False)).run_dir
        deadline = time.monotonic() + 120
        while True:  # the server is up when it answers (imports take a few seconds)
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/api/tasks", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "harness board serve did not answer"
            time.sleep(0.2)
        capsys.readouterr()
        assert harness_main(["submit", str(run_dir), "--to", url, "--token", TOKEN]) == 0
        out = capsys.readouterr().out
        local = json.loads((run_dir / "metrics.json").read_text())["metrics"]["weighted_f1"]
        api = httpx.get(f"{url}/api/runs/{run_dir.name}").json()
        assert out.startswith(f"accepted: {run_dir.name}") and "re-scored by the board" in out
        assert api["origin"] == "server" and api["submitter"] == "alice"
        assert api["metrics"]["weighted_f1"]["value"] == pytest.approx(100 * local["value"])
        assert run_dir.name in httpx.get(f"{url}/task/sarcasm").text
        assert harness_main(["submit", str(run_dir), "--to", url, "--token", "not-" + TOKEN]) == 2
        assert "missing or unknown token" in capsys.readouterr().err
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert (tmp_path / "board.sqlite").is_file()  # the default database, in the working directory
    assert "POST /api/submit" in log and TOKEN not in log  # requests are logged, tokens never


@pytest.mark.parametrize(("text", "message"), [
    ("alice short\n", "tokens.txt:1: expected 'SUBMITTER TOKEN'"),
    (f"# comment\n\nalice {TOKEN} extra\n", "tokens.txt:3: expected"),
    (f"<b>x</b> {TOKEN}\n", "tokens.txt:1: expected"),
])
def test_token_file_lines_are_checked(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "tokens.txt").write_text(text)
    with pytest.raises(HarnessError, match=message):
        load_tokens(tmp_path / "tokens.txt")


def test_token_file_maps_hashes_to_submitters_and_a_missing_file_is_a_clear_error(tmp_path: Path,
                                                                                  capsys) -> None:
    (tmp_path / "tokens.txt").write_text(f"alice {TOKEN}\n  # bob is away\nbob {TOKEN[::-1]}\n")
    assert load_tokens(tmp_path / "tokens.txt") == {token_hash(TOKEN): "alice", token_hash(TOKEN[::-1]): "bob"}
    assert harness_main(["board", "serve", "--token-file", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: cannot read the token file" in capsys.readouterr().err
