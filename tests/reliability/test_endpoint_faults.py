"""Endpoint faults, each with its expected outcome (issue 9): retried; errored and not cached; or an
invalid prediction. Never a class read out of an answer that does not say one.

The sarcasm MLLM solver runs through the CLI on the shipped MUStARD text (`--limit 1`: 5 samples, one
per fold) against `tests/servers/faulty_openai.py`. "Not cached" is checked from outside: a re-run
against the same endpoint, now healthy, recomputes the errored samples (and gets a class for them).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.servers.faulty_openai import FaultyServer

N = 5  # --limit 1 over five folds


def run_sarcasm(url: str, out: Path, *extra: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    before = set(out.glob("sarcasm-mllm-*")) if out.exists() else set()
    code = main(["run", "--task", "sarcasm", "--model", "faulty", "--base-url", url, "--limit", "1",
                 "--out", str(out), "--no-progress", "--bootstrap", "50", "--timeout", "0.5", "--max-retries", "3",
                 *extra])
    assert code == 0
    (run,) = set(out.glob("sarcasm-mllm-*")) - before
    metrics = json.loads((run / "metrics.json").read_text())
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == N and len({(s["fold"], s["sample_id"]) for s in samples}) == N
    return metrics, samples


@pytest.mark.parametrize("mode", ["5xx", "429"])
def test_server_errors_are_retried_until_they_succeed(tmp_path: Path, mode: str) -> None:
    with FaultyServer(mode, fail_times=2, retry_after_s=0.2) as srv:
        metrics, samples = run_sarcasm(srv.base_url, tmp_path)
        stats = srv.stats()
    assert metrics["n_errors"] == 0
    assert [s["prediction"] for s in samples] == [True] * N
    assert stats["by_status"]["429" if mode == "429" else "500"] == 2 * N  # two failures per request, retried
    if mode == "429":
        assert stats["min_retry_gap_s"] >= 0.2  # Retry-After honoured


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("hang", "timed out"),
        ("stalled", "timed out"),
        ("invalid_json", "invalid JSON"),
        ("empty_choices", "without a choice"),
        ("null_content", "empty message"),
        ("empty_content", "empty message"),
        ("number_content", "non-text message content"),
    ],
)
def test_unusable_answers_are_errors_naming_the_endpoint_and_are_never_cached(
    tmp_path: Path, mode: str, message: str
) -> None:
    with FaultyServer(mode) as srv:
        metrics, samples = run_sarcasm(srv.base_url, tmp_path)
        assert metrics["n_errors"] == N
        for s in samples:
            assert s["prediction"] is None and message in s["error"] and srv.base_url in s["error"]
        srv.set_mode("ok")
        again, samples = run_sarcasm(srv.base_url, tmp_path)
    assert again["n_cached"] == 0 and again["n_errors"] == 0  # nothing of the failed run was cached
    assert [s["prediction"] for s in samples] == [True] * N


@pytest.mark.parametrize(
    ("mode", "truncated"), [("truncated", True), ("bad_value", False), ("null_value", False)]
)
def test_unreadable_json_answers_are_invalid_never_a_class(tmp_path: Path, mode: str, truncated: bool) -> None:
    with FaultyServer(mode) as srv:
        metrics, samples = run_sarcasm(srv.base_url, tmp_path)
    assert metrics["n_errors"] == 0
    for s in samples:
        assert s["prediction"] is None and s["info"]["invalid"] is True
        assert s["scores"]["correct"] == 0.0  # counted as wrong, never as "sarcastic"
        assert bool(s["info"].get("truncated")) is truncated


def test_a_server_that_dies_mid_run_and_returns_loses_nothing(tmp_path: Path) -> None:
    srv = FaultyServer("ok", process=True, die_after=3, answer='{"sarcastic": false}').start()
    port, restarted = srv.port, threading.Event()

    def come_back() -> None:  # the server dies on its 3rd request; it is back 0.5 s later on the same port
        while srv.alive():
            time.sleep(0.01)
        time.sleep(0.5)
        srv.state.die_after, srv.port = 0, port
        srv.start()
        restarted.set()

    thread = threading.Thread(target=come_back)
    thread.start()
    try:
        metrics, samples = run_sarcasm(srv.base_url, tmp_path, "--concurrency", "1", "--max-retries", "8")
        thread.join(timeout=30)
        assert restarted.is_set()  # it did die mid-run
        served_after_restart = srv.stats()["requests"]
    finally:
        srv.stop()
    assert metrics["n_errors"] == 0
    assert [s["prediction"] for s in samples] == [False] * N
    assert served_after_restart == N - 2  # the 3rd request was retried on the new server, none lost or doubled


def test_a_base_url_where_no_server_listens_fails_every_sample_fast_with_the_fix(tmp_path: Path) -> None:
    """A wrong --base-url used to cost every sample its whole retry schedule (~14 s each); after the first
    request gives up on a connection error, the rest fail at once, each an error naming the endpoint."""
    import socket

    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["run", "--task", "sarcasm", "--model", "m", "--base-url", f"http://127.0.0.1:{port}/v1",
                 "--limit", "6", "--concurrency", "1", "--max-retries", "2", "--out", str(tmp_path),
                 "--no-progress", "--bootstrap", "0"])
    assert code == 0  # errors are per sample; the run itself finishes
    (run,) = tmp_path.glob("sarcasm-mllm-*")
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 30 and all(s["error"] for s in samples)
    assert "gave up" in samples[0]["error"] and f"127.0.0.1:{port}" in samples[0]["error"]
    fast = [s for s in samples if "is unreachable" in s["error"]]
    assert len(fast) == 29 and all("--base-url" in s["error"] for s in fast)
