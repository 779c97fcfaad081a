"""Board latency with many rows, and submissions per second with server-side recomputation.

Two boards are built in the same run, one with `--small` rows (the baseline) and one with `--rows`
rows (default 10,000), all in one comparable group of sarcasm/speaker-dependent so that ranking, rank
intervals and paired tests work on every row. Rows are copies of real submissions (their records,
report and joint-bootstrap replicates) with perturbed metric values and replicates, inserted in bulk.
Pages and API endpoints are requested in process (FastAPI TestClient, so no network): the first
request (cold: ranking, paired tests for the first `paired_rows` rows, stored afterwards) and the
median of `--repeat` warm ones. Submissions: `--submissions` synthetic runs of 690 predictions posted
to /api/submit (validation, re-scoring with the server's targets, CIs, joint replicates, plots,
storage); baseline: harness.scoring.rescore alone on the same records (what `harness score` does).

Usage: python benchmarks/board.py [--rows 10000] [--small 10] [--submissions 5] [--n-boot 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from harness.board.app import BoardSettings, create_app, token_hash
from harness.board.ingest import load_server_task, server_records
from harness.board.store import payloads_table, plots_table
from harness.leaderboard import metrics_table, runs_table
from harness.scoring import rescore

TOKEN = "bench-token-0123456789abcdef"


def write_payload(st, run_id: str, wrong_mod: int) -> bytes:
    lines = []
    for split, fold, sid in st.order:
        t = bool(st.samples[(split, fold, sid)].target)
        wrong = int(hashlib.sha256(f"{run_id}{sid}".encode()).hexdigest(), 16) % wrong_mod == 0
        lines.append(orjson.dumps({"sample_id": sid, "fold": fold, "split": split, "prediction": t != wrong,
                                   "error": None}).decode())
    manifest = {"run_id": run_id, "status": "finished", "scorer_version": "1", "task_version": "1",
                "data_fingerprint": st.fingerprint, "config_hash": "0" * 16,
                "config": {"task": "sarcasm", "protocol": "speaker-dependent", "solver": "tfidf",
                           "solver_options": {"C": wrong_mod}, "seed": 0}}
    return orjson.dumps({"manifest": manifest, "samples": "\n".join(lines), "artifacts": {}})


def bulk_copy(app, template: str, n: int, seed: int) -> None:
    """n copies of a stored run (new ids, perturbed values and replicates) in one transaction."""
    store = app.state.store
    rng = np.random.default_rng(seed)
    with store.engine.begin() as conn:
        run = dict(conn.execute(select(runs_table).where(runs_table.c.run_id == template)).mappings().one())
        mets = [dict(m) for m in conn.execute(select(metrics_table).where(metrics_table.c.run_id == template))
                .mappings()]
        pay = dict(conn.execute(select(payloads_table).where(payloads_table.c.run_id == template)).mappings().one())
        plots = [dict(p) for p in conn.execute(select(plots_table).where(plots_table.c.run_id == template))
                 .mappings()]
        reps = np.frombuffer(pay["replicates"], dtype="<f8")
        runs, metrics, payloads, pls = [], [], [], []
        for i in range(n):
            rid = f"copy-{i:06d}"
            shift = float(rng.normal(0, 0.05))
            runs.append({**run, "run_id": rid, "solver": f"copy{i % 50}"})
            metrics += [{**m, "run_id": rid, "value": None if m["value"] is None else m["value"] + shift}
                        for m in mets]
            payloads.append({**pay, "run_id": rid, "digest": rid,
                             "replicates": (reps + shift + rng.normal(0, 0.01, reps.shape)).astype("<f8").tobytes()})
            pls += [{**p, "run_id": rid} for p in plots]
        conn.execute(insert(runs_table), runs)
        conn.execute(insert(metrics_table), metrics)
        conn.execute(insert(payloads_table), payloads)
        if pls:
            conn.execute(insert(plots_table), pls)


def timed(client: TestClient, url: str, repeat: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    r = client.get(url)
    cold = time.perf_counter() - t0
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    warm = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(url)
        warm.append(time.perf_counter() - t0)
    return cold, statistics.median(warm), len(r.content)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--submissions", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    st = load_server_task("sarcasm", "speaker-dependent", None)
    tmp = Path(tempfile.mkdtemp(prefix="board-bench-"))
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def board(name: str) -> TestClient:
        url = f"sqlite:///{tmp / name}.sqlite"
        return TestClient(create_app(BoardSettings(url, tokens={token_hash(TOKEN): "bench"}, n_boot=args.n_boot,
                                                   quota_per_day=10**6)))

    # submissions/s with recomputation, against rescore alone on the same predictions
    big = board("big")
    payloads = [write_payload(st, f"sub-{i}", 3 + i) for i in range(args.submissions)]
    t0 = time.perf_counter()
    for body in payloads:
        r = big.post("/api/submit", content=body, headers=headers)
        assert r.status_code == 201, r.text
    submit_s = (time.perf_counter() - t0) / len(payloads)
    t0 = time.perf_counter()
    for body in payloads:
        d = orjson.loads(body)
        recs = server_records([orjson.loads(x) for x in d["samples"].splitlines()], st)
        rescore(st.task, "speaker-dependent", recs, n_boot=args.n_boot, seed=0)
    rescore_s = (time.perf_counter() - t0) / len(payloads)
    print(f"submissions: {1 / submit_s:.2f}/s ({submit_s * 1000:.0f} ms each; 690 predictions, {args.n_boot} "
          f"bootstrap replicates) · rescore alone {1 / rescore_s:.2f}/s · ratio submit/rescore time "
          f"{submit_s / rescore_s:.2f}x")

    small = board("small")
    for body in payloads[: min(len(payloads), args.small)]:
        assert small.post("/api/submit", content=body, headers=headers).status_code == 201
    t0 = time.perf_counter()
    bulk_copy(small.app, "sub-0", max(0, args.small - len(payloads)), 1)
    bulk_copy(big.app, "sub-0", args.rows - len(payloads), 2)
    print(f"bulk insert of {args.rows} rows: {time.perf_counter() - t0:.1f} s")
    base = f"warm vs {args.small} rows"
    print(f"{'endpoint':34} {'rows':>6} {'cold ms':>9} {'warm ms':>9} {'bytes':>10} {base:>16}")
    urls = ["/", "/task/sarcasm", "/task/sarcasm?limit=0", "/api/tasks", "/api/tasks/sarcasm?limit=100",
            "/api/runs/sub-0", "/run/sub-0", "/api/tasks/sarcasm/rows.csv", "/api/tasks/sarcasm/rows.parquet"]
    results = {}
    for name, client in (("small", small), ("big", big)):
        for url in urls:
            results[(name, url)] = timed(client, url, args.repeat)
    for url in urls:
        for name, n in (("small", args.small), ("big", args.rows)):
            cold, warm, size = results[(name, url)]
            ratio = warm / results[("small", url)][1]
            print(f"{url:34} {n:>6} {cold * 1000:>9.1f} {warm * 1000:>9.1f} {size:>10} {ratio:>15.1f}x")
    (tmp / "results.json").write_text(json.dumps({f"{k[0]} {k[1]}": v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
