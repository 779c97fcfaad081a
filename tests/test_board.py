"""The shared board through its HTTP API (FastAPI's TestClient): submissions are re-scored with the
server's own ground truth and checked against sklearn; tampering, bad names, missing tokens, quotas
and over-size uploads are refused and audited; pages escape every string; exports round-trip.
The store runs on SQLite, and on PostgreSQL too when HARNESS_TEST_PG_URL is set (CI starts one)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import f1_score

from harness import registry
from harness.artifacts import ArtifactStore
from harness.board.client import build_payload
from harness.board.ranking import rank_intervals
from harness.core import Fold, HarnessError, Metric, Sample, ScoreContext, SolverOptions, Task
from harness.registry import get_task, register_task
from harness.stats import MetricValue, paired_bootstrap
from tests.board_helpers import TOKENS, auth, create_app, fresh_db, pg_url, server_task, settings, write_run

URLS = ["sqlite"] + (["postgresql"] if pg_url() else [])


@pytest.fixture(params=URLS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'board.sqlite'}" if request.param == "sqlite" else pg_url()
    with fresh_db(url) as u:
        yield u


def quarter_wrong(fold: str, sid: str, target: bool) -> bool:
    """Right on 3 of 4 samples (by a hash of the id), wrong on the rest."""
    return target if int(hashlib.sha256(sid.encode()).hexdigest(), 16) % 4 else not target


def always_true(fold: str, sid: str, target: bool) -> bool:
    return True


def sklearn_weighted_f1(predict) -> float:
    """MUStARD's headline by hand: sklearn's weighted F1 per official fold, averaged over folds."""
    st = server_task()
    per_fold: dict[str, tuple[list[int], list[int]]] = {}
    for split, fold, sid in st.order:
        t = bool(st.samples[(split, fold, sid)].target)
        yt, yp = per_fold.setdefault(fold, ([], []))
        yt.append(int(t))
        yp.append(int(predict(fold, sid, t)))
    return mean(f1_score(yt, yp, average="weighted", labels=[0, 1], zero_division=0) for yt, yp in per_fold.values())


def post(client: TestClient, run_dir: Path, who: str = "alice"):
    return client.post("/api/submit", content=build_payload(run_dir), headers=auth(who))


def test_submission_is_rescored_with_the_servers_targets_and_matches_sklearn(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    run = write_run(tmp_path, "run-a", quarter_wrong)
    # tamper: claim the labels were whatever the predictions said (targets in samples.jsonl are ignored)
    lines = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    for d in lines:
        d["target"], d["scores"] = d["prediction"], {"correct": 1.0}
    (run / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    r = post(client, run)
    assert r.status_code == 201, r.text
    got = r.json()["metrics"]["weighted_f1"]["value"]
    assert got == pytest.approx(sklearn_weighted_f1(quarter_wrong), abs=1e-12)
    assert got < 0.8  # neither the tampered metrics.json (1.0) nor the tampered targets (1.0) were used
    api = client.get("/api/runs/run-a").json()
    assert api["origin"] == "server" and api["submitter"] == "alice"
    assert api["metrics"]["weighted_f1"]["value"] == pytest.approx(100 * got)
    lo, hi = api["metrics"]["weighted_f1"]["ci_low"], api["metrics"]["weighted_f1"]["ci_high"]
    assert lo < 100 * got < hi


def test_rank_intervals_and_paired_tests_on_the_task_page(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "good", quarter_wrong, solver="tfidf")).status_code == 201
    assert post(client, write_run(tmp_path, "const", always_true, solver="majority")).status_code == 201
    assert post(client, write_run(tmp_path, "good-twin", quarter_wrong, solver="random")).status_code == 201
    data = client.get("/api/tasks/sarcasm", params={"protocol": "speaker-dependent"}).json()
    (group,) = data["groups"]
    rows = {r["run_id"]: r for r in group["rows"]}
    assert rows["const"]["rank"] == 3 and rows["const"]["rank_interval"] == [3, 3]
    # identical predictions tie in every replicate: both rank 1 (1 + number strictly better)
    assert rows["good"]["rank_interval"] == [1, 1] and rows["good-twin"]["rank_interval"] == [1, 1]
    leader = group["rows"][0]["run_id"]
    vs = rows["const"]["vs_leader"]
    expected_diff = sklearn_weighted_f1(always_true) - sklearn_weighted_f1(quarter_wrong)
    assert vs["diff"] == pytest.approx(expected_diff, abs=1e-12) and vs["n_shared"] == 690
    assert vs["p_value"] < 0.05
    app_store = client.app.state.store
    metric = get_task("sarcasm").metrics("speaker-dependent")[0]
    direct = paired_bootstrap(metric, app_store.records("const"), app_store.records(leader), n_boot=200, seed=0)
    assert vs["p_value"] == pytest.approx(direct.p_value) and vs["ci_low"] == pytest.approx(direct.ci_low)
    # baseline = the task's default solver (tfidf): the majority row is compared with "good"
    assert rows["const"]["vs_baseline"]["diff"] == pytest.approx(expected_diff, abs=1e-12)
    page = client.get("/task/sarcasm").text
    assert "Castro et al. 2019" in page and "paper_reported" in page  # the papers' rows, apart
    assert page.index('<section class="references">') > page.index('data-run="const"')
    assert len(group["rows"]) == 3 and data["references"]  # references listed apart, never ranked


def test_rank_intervals_by_hand() -> None:
    # 3 runs x 4 replicates; higher is better; rank = 1 + number strictly better in that replicate
    reps = np.array([[0.9, 0.8, 0.7, 0.9], [0.8, 0.9, 0.6, 0.9], [0.1, 0.2, np.nan, 0.3]])
    # ranks: run0 [1,2,1,1], run1 [2,1,2,1], run2 [3,3,3,3]
    got = rank_intervals(reps, True)
    assert got[2] == (3, 3)
    assert got[0] == (1, 2) and got[1] == (1, 2)
    assert rank_intervals(-reps, False)[2] == (3, 3)
    # against the definition, column by column, with ties (rounded values) and NaN
    rng = np.random.default_rng(1)
    reps = np.round(rng.normal(0.5, 0.1, (7, 60)), 1)
    reps[3, :5] = np.nan
    v = np.where(np.isnan(reps), -np.inf, reps)
    ranks = np.array([[1 + (v[:, k] > v[i, k]).sum() for k in range(60)] for i in range(7)])
    expected = [(int(np.floor(np.percentile(r, 2.5))), int(np.ceil(np.percentile(r, 97.5)))) for r in ranks]
    assert rank_intervals(reps, True) == expected


@pytest.mark.parametrize("override,reason", [
    ({"data_fingerprint": "0123456789abcdef"}, "data fingerprint mismatch"),
    ({"scorer_version": "0"}, "scorer version mismatch"),
    ({"protocol_options": {"order": "C,M"}}, "protocol options mismatch"),  # another protocol, never rescored
    ({"run_id": "../../etc/passwd"}, "not a valid name"),
    ({"run_id": "<script>x</script>"}, "not a valid name"),
    ({"status": "interrupted"}, "only finished runs"),
])
def test_tampered_or_malformed_manifests_are_refused_with_the_reason(db_url: str, tmp_path: Path,
                                                                     override: dict, reason: str) -> None:
    client = TestClient(create_app(settings(db_url)))
    r = post(client, write_run(tmp_path, "x", quarter_wrong, manifest=override))
    assert r.status_code in (409, 422) and reason in r.json()["reason"]
    audit = client.get("/api/audit", headers=auth()).json()
    assert audit[0]["outcome"] == "refused" and reason in audit[0]["reason"]
    assert client.get("/api/tasks/sarcasm").json()["groups"] == []


def test_sql_and_markup_in_names_are_refused(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    r = post(client, write_run(tmp_path, "x", quarter_wrong, solver="tfidf'; DROP TABLE runs;--"))
    assert r.status_code == 422 and "solver" in r.json()["reason"]
    r = post(client, write_run(tmp_path, "y", quarter_wrong, options={"<b>k</b>": 1}))
    assert r.status_code == 422 and "solver option" in r.json()["reason"]


def test_missing_unknown_samples_and_incomplete_runs_are_refused(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    run = write_run(tmp_path, "short", quarter_wrong)
    lines = (run / "samples.jsonl").read_text().splitlines()
    (run / "samples.jsonl").write_text("\n".join(lines[:100]) + "\n")
    r = post(client, run)
    assert r.status_code == 422 and "covers 100 of 690" in r.json()["reason"]
    run = write_run(tmp_path, "alien", quarter_wrong)
    d = json.loads(lines[0])
    d["sample_id"] = "not-a-mustard-id"
    (run / "samples.jsonl").write_text("\n".join([json.dumps(d), *lines[1:]]) + "\n")
    r = post(client, run)
    assert r.status_code == 422 and "not-a-mustard-id" in r.json()["reason"]


def test_tokens_are_required_and_never_stored_or_echoed(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    run = write_run(tmp_path, "r", quarter_wrong)
    assert client.post("/api/submit", content=build_payload(run)).status_code == 401
    bad = client.post("/api/submit", content=build_payload(run), headers={"Authorization": "Bearer nope-0123456789"})
    assert bad.status_code == 401 and "nope" not in bad.text
    assert client.get("/api/audit").status_code == 401
    ok = post(client, run, "bob")
    assert ok.status_code == 201
    dump = json.dumps(client.get("/api/audit", headers=auth()).json()) + client.get("/task/sarcasm").text
    dump += json.dumps(client.get("/api/runs/r").json())
    assert all(t not in dump for t in TOKENS.values()) and "bob" in dump


def test_resubmission_is_idempotent_and_a_changed_run_with_the_same_id_is_refused(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    run = write_run(tmp_path, "same", quarter_wrong)
    assert post(client, run).status_code == 201
    again = post(client, run)
    assert again.status_code == 200 and again.json()["status"] == "exists"
    assert len(client.get("/api/tasks/sarcasm").json()["groups"][0]["rows"]) == 1
    other = write_run(tmp_path / "b", "same", always_true)
    r = post(client, other)
    assert r.status_code == 409 and "different content" in r.json()["reason"]
    outcomes = [a["outcome"] for a in client.get("/api/audit", headers=auth()).json()]
    assert outcomes == ["refused", "duplicate", "accepted"]  # newest first, append-only


def test_daily_quota_per_submitter(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url, quota_per_day=2)))
    assert post(client, write_run(tmp_path, "q1", quarter_wrong)).status_code == 201
    assert post(client, write_run(tmp_path, "q2", always_true)).status_code == 201
    r = post(client, write_run(tmp_path, "q3", always_true))
    assert r.status_code == 429 and "quota" in r.json()["reason"]
    assert post(client, write_run(tmp_path, "q4", always_true), "bob").status_code == 201  # bob's own quota
    page = client.get("/task/sarcasm").text
    assert "alice (3)" in page and "bob (1)" in page  # attempts column


def test_concurrent_submissions_cannot_overrun_the_quota(db_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The quota counts audit rows, written when an attempt ends: attempts still being scored count too."""
    import threading

    import harness.board.ingest as ingest

    real, entered, release = ingest.recompute, threading.Semaphore(0), threading.Event()

    def slow(*args, **kwargs):
        entered.release()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "recompute", slow)
    client = TestClient(create_app(settings(db_url, quota_per_day=2)))
    payloads = [build_payload(write_run(tmp_path, f"c{i}", quarter_wrong)) for i in range(3)]
    codes: list[int] = []

    def send(payload: bytes) -> None:
        codes.append(client.post("/api/submit", content=payload, headers=auth()).status_code)

    threads = [threading.Thread(target=send, args=(p,)) for p in payloads[:2]]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)  # two attempts in scoring at once
    send(payloads[2])  # a third, while neither has an audit row yet
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert sorted(codes) == [201, 201, 429]


def test_over_size_upload_is_refused(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url, max_upload_bytes=10_000)))
    r = post(client, write_run(tmp_path, "big", quarter_wrong))
    assert r.status_code == 413 and "larger than 10000 bytes" in r.json()["reason"]
    assert client.get("/api/audit", headers=auth()).json()[0]["outcome"] == "refused"


def test_over_size_upload_without_a_declared_length_is_refused_while_streaming(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url, max_upload_bytes=10_000)))
    body = build_payload(write_run(tmp_path, "big", quarter_wrong))
    r = client.post("/api/submit", content=iter([body[i:i + 4096] for i in range(0, len(body), 4096)]),
                    headers=auth())
    assert "content-length" not in r.request.headers  # chunked: only the streamed byte count can stop it
    assert r.status_code == 413 and "larger than 10000 bytes" in r.json()["reason"]
    assert client.get("/api/audit", headers=auth()).json()[0]["outcome"] == "refused"
    assert client.get("/api/tasks/sarcasm").json()["groups"] == []


def test_a_run_that_errors_out_its_wrong_answers_is_listed_but_not_ranked(db_url: str, tmp_path: Path) -> None:
    """Errored samples are left out of the metrics: erroring out the wrong answers would give a perfect
    score. Such a row (more errors than the group's fewest) is shown after the ranked rows, unranked."""
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "honest", quarter_wrong)).status_code == 201
    gamer = write_run(tmp_path, "gamer", quarter_wrong)
    lines = [json.loads(x) for x in (gamer / "samples.jsonl").read_text().splitlines()]
    n_wrong = 0
    for d in lines:
        if d["prediction"] != d["target"]:
            d["prediction"], d["error"], n_wrong = None, "RuntimeError: skipped", n_wrong + 1
    (gamer / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert post(client, gamer).status_code == 201
    (group,) = client.get("/api/tasks/sarcasm").json()["groups"]
    rows = {r["run_id"]: r for r in group["rows"]}
    assert rows["gamer"]["metrics"]["weighted_f1"]["value"] == 100.0  # what ranking by the metric alone would reward
    assert rows["gamer"]["n_errors"] == n_wrong > 0 and rows["gamer"]["rank"] is None
    assert rows["gamer"]["rank_interval"] is None and f"{n_wrong} errored samples" in rows["gamer"]["not_ranked"]
    assert [r["run_id"] for r in group["rows"]] == ["honest", "gamer"]
    assert rows["honest"]["rank"] == 1 and rows["honest"]["rank_interval"] == [1, 1]
    assert rows["honest"]["not_ranked"] is None and rows["gamer"]["vs_leader"]["n_shared"] == 690 - n_wrong
    assert f"not ranked: {n_wrong} errored" in client.get("/task/sarcasm").text


def test_rows_of_other_scorer_versions_or_data_are_never_ranked_together(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "now", quarter_wrong)).status_code == 201
    st = server_task()
    for run_id, scorer, fp in (("old-scorer", "0", st.fingerprint), ("other-data", "1", "f" * 16)):
        manifest = {"run_id": run_id, "config": {"task": "sarcasm", "protocol": "speaker-dependent",
                                                 "solver": "tfidf", "solver_options": {}},
                    "config_hash": "0" * 16, "data_fingerprint": fp, "n_samples": 690, "n_errors": 0,
                    "scorer_version": scorer}  # a perfect number, but not comparable with "now"
        client.app.state.store.add_run(manifest, {"weighted_f1": MetricValue("weighted_f1", 0.99, 0.98, 1.0, 690,
                                                                             True)}, "weighted_f1")
    groups = client.get("/api/tasks/sarcasm").json()["groups"]
    where = {r["run_id"]: (g["scorer_version"], g["data_fingerprint"], r["rank"]) for g in groups for r in g["rows"]}
    assert len(groups) == 3 and where == {"now": ("1", st.fingerprint, 1), "old-scorer": ("0", st.fingerprint, 1),
                                          "other-data": ("1", "f" * 16, 1)}
    assert next(g for g in groups if g["rows"][0]["run_id"] == "now")["rows"][0]["vs_leader"] is None
    assert client.get("/task/sarcasm").text.count('<section class="group"') == 3


def test_path_traversing_and_unknown_ids_in_urls(db_url: str) -> None:
    client = TestClient(create_app(settings(db_url)))
    assert client.get("/run/..%2F..%2Fetc%2Fpasswd").status_code in (400, 404)
    assert client.get("/run/a..b").status_code == 400
    assert client.get("/run/%3Cscript%3E").status_code == 400
    assert client.get("/api/runs/..hidden").status_code == 400
    assert client.get("/api/runs/nothing-here").status_code == 404
    assert client.get("/task/not-a-task").status_code == 404
    assert client.get("/task/sarcasm", params={"protocol": "<x>"}).status_code == 404


def test_pages_escape_submitted_strings(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    evil = "<img src=x onerror=alert(1)>"
    r = post(client, write_run(tmp_path, "esc", quarter_wrong, options={"note": evil}))
    assert r.status_code == 201, r.text
    for url in ("/task/sarcasm", "/run/esc"):
        html = client.get(url).text
        assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_run_page_plots_and_sample_browser(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "p", quarter_wrong)).status_code == 201
    api = client.get("/api/runs/p").json()
    assert any("confusion_pooled" in p for p in api["plots"])
    png = client.get(next(p for p in api["plots"] if "pooled" in p))
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    pooled = api["report"]["pooled"]["confusion_matrix"]["counts"]
    st = server_task()
    n_true_sarcastic = sum(bool(s.target) for k, s in st.samples.items())
    assert sum(pooled[1]) == n_true_sarcastic  # the server's targets, not the submitted ones
    html = client.get("/run/p", params={"fold": "fold2", "limit": 5}).text
    assert "fold2" in html and "per_class" in html or "not_sarcastic" in html
    s = client.get("/api/runs/p/samples", params={"fold": "fold1", "limit": 3}).json()
    assert s["total"] == 138 and len(s["samples"]) == 3


def test_exports_csv_and_parquet(db_url: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "e1", quarter_wrong)).status_code == 201
    assert post(client, write_run(tmp_path, "e2", always_true, solver="majority")).status_code == 201
    rows = list(csv.DictReader(io.StringIO(client.get("/api/tasks/sarcasm/rows.csv").text)))
    table = pq.read_table(io.BytesIO(client.get("/api/tasks/sarcasm/rows.parquet").content)).to_pylist()
    assert {r["run_id"] for r in rows} == {r["run_id"] for r in table} == {"e1", "e2"}
    by_id = {r["run_id"]: r for r in table}
    assert by_id["e2"]["weighted_f1"] == pytest.approx(100 * sklearn_weighted_f1(always_true))
    csv_e2 = next(r for r in rows if r["run_id"] == "e2")
    assert float(csv_e2["weighted_f1"]) == pytest.approx(by_id["e2"]["weighted_f1"])


def test_index_lists_tasks_protocols_and_row_counts(db_url: str, tmp_path: Path) -> None:
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "i1", quarter_wrong)).status_code == 201
    tasks = {t["task"]: t for t in client.get("/api/tasks").json()}
    assert tasks["sarcasm"]["protocols"]["speaker-dependent"] == 1 and tasks["sarcasm"]["rows"] == 1
    assert "speaker-independent" in client.get("/").text


def test_joint_replicates_are_the_runs_own_bootstrap_when_it_has_no_errors(db_url: str, tmp_path: Path) -> None:
    """Without errored samples the board's shared resamples are exactly harness.stats' draws for the run,
    so the stored replicates reproduce the run's CI; with errors they still share the resamples."""
    client = TestClient(create_app(settings(db_url)))
    assert post(client, write_run(tmp_path, "j", quarter_wrong)).status_code == 201
    reps = client.app.state.store.replicates(["j"])["j"]
    ci = client.get("/api/runs/j").json()["metrics"]["weighted_f1"]
    assert len(reps) == 100
    assert 100 * np.percentile(reps, 2.5) == pytest.approx(ci["ci_low"])
    assert 100 * np.percentile(reps, 97.5) == pytest.approx(ci["ci_high"])


# ---- a task whose scorer reads the run's artifacts (as fdeid reads protected images) ------------------

class ArtifactToyTask(Task):
    """Four samples; the prediction names an artifact (an array) and is right when its sum is the target."""

    name = "boardart"
    protocols = {"all": "four samples, one fold"}
    default_protocol = "all"
    default_solver = "none"
    data_folder = "boardart"
    data_dir: Path | None = None

    def resolve_data(self, data: Path | None) -> Path:
        assert ArtifactToyTask.data_dir is not None
        return ArtifactToyTask.data_dir

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        return [Fold("all", [Sample(f"s{i}", {}, i) for i in range(4)])]

    def score(self, sample: Sample, prediction: object) -> dict:
        raise HarnessError("boardart scores with the run's artifacts: use ascore")

    async def ascore(self, sample: Sample, prediction: object, ctx: ScoreContext) -> dict:
        return {"correct": float(ctx.artifacts.load_array(prediction["ref"]).sum() == sample.target)}

    def metrics(self, protocol: str) -> list[Metric]:
        return [Metric("accuracy", mean_of="correct")]


def write_artifact_run(root: Path, run_id: str, values: list[int]) -> Path:
    store = ArtifactStore(root / "artifacts")
    task = ArtifactToyTask()
    lines = []
    for i, v in enumerate(values):
        ref = store.put_array(np.asarray([v], dtype=np.int64))
        lines.append({"sample_id": f"s{i}", "fold": "all", "split": "test", "prediction": {"ref": ref},
                      "artifacts": {"array": ref}, "error": None})
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    (run_dir / "manifest.json").write_text(json.dumps({
        "run_id": run_id, "status": "finished", "scorer_version": "1",
        "data_fingerprint": task.fingerprint(ArtifactToyTask.data_dir),
        "config": {"task": "boardart", "protocol": "all", "solver": "arrays"}}))
    return run_dir


@pytest.fixture
def artifact_task(tmp_path: Path):
    data = tmp_path / "boardart-data"
    data.mkdir()
    (data / "README").write_text("the toy's data")
    ArtifactToyTask.data_dir = data
    register_task(ArtifactToyTask)
    yield ArtifactToyTask
    registry._tasks.pop(ArtifactToyTask.name, None)  # other tests list the registered tasks


def test_artifacts_are_uploaded_verified_and_scored_by_the_server(db_url: str, tmp_path: Path,
                                                                    artifact_task: type) -> None:
    client = TestClient(create_app(settings(db_url)))
    run = write_artifact_run(tmp_path / "r", "art-1", [0, 1, 2, 7])  # 3 of 4 right
    r = post(client, run)
    assert r.status_code == 201, r.text
    assert r.json()["metrics"]["accuracy"]["value"] == pytest.approx(0.75)
    # without the files the scorer cannot read the arrays: every sample is a scoring error, no number
    body = json.loads(build_payload(write_artifact_run(tmp_path / "n", "art-2", [0, 1, 2, 3]), with_files=False))
    r = client.post("/api/submit", content=json.dumps(body), headers=auth())
    assert r.status_code == 201 and r.json()["metrics"]["accuracy"]["value"] is None
    # a file swapped under its content address is refused
    body = json.loads(build_payload(write_artifact_run(tmp_path / "t", "art-3", [0, 1, 2, 3])))
    ref = next(iter(body["artifact_files"]))
    body["artifact_files"][ref] = base64.b64encode(b"something else").decode()
    r = client.post("/api/submit", content=json.dumps(body), headers=auth())
    assert r.status_code == 422 and "do not match its sha256 name" in r.json()["reason"]


class OptionsToyTask(Task):
    """Two samples and a protocol option (as pad_il's `-P order=`) whose default is "a,b"."""

    name = "boardopts"
    protocols = {"seq": "two samples"}
    default_protocol = "seq"
    default_solver = "none"
    data_folder = "boardopts"
    data_dir: Path | None = None

    class ProtocolOptions(SolverOptions):
        order: str = "a,b"

    def resolve_data(self, data: Path | None) -> Path:
        assert OptionsToyTask.data_dir is not None
        return OptionsToyTask.data_dir

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        return [Fold("all", [Sample("s0", {}, True), Sample("s1", {}, False)])]

    def score(self, sample: Sample, prediction: object) -> dict:
        return {"correct": float(prediction == sample.target)}

    def metrics(self, protocol: str) -> list[Metric]:
        return [Metric("accuracy", mean_of="correct")]


@pytest.mark.parametrize(("options", "status"), [
    (None, 201), ({}, 201),
    ({"order": "a,b"}, 201),  # the default written out (manifests before only non-defaults were kept)
    ({"order": "b,a"}, 422), ({"order": "a,b", "extra": 1}, 422), ("a,b", 422),
])
def test_protocol_options_are_compared_with_the_defaults_filled_in(db_url: str, tmp_path: Path, options: object,
                                                                   status: int) -> None:
    data = tmp_path / "opts-data"
    data.mkdir()
    (data / "README").write_text("the toy's data")
    OptionsToyTask.data_dir = data
    register_task(OptionsToyTask)
    try:
        run_dir = tmp_path / "opt-run"
        run_dir.mkdir()
        (run_dir / "samples.jsonl").write_text("".join(
            json.dumps({"sample_id": sid, "fold": "all", "split": "test", "prediction": True, "error": None}) + "\n"
            for sid in ("s0", "s1")))
        (run_dir / "manifest.json").write_text(json.dumps({
            "run_id": "opt-run", "status": "finished", "scorer_version": "1", "protocol_options": options,
            "data_fingerprint": OptionsToyTask().fingerprint(data),
            "config": {"task": "boardopts", "protocol": "seq", "solver": "const"}}))
        r = post(TestClient(create_app(settings(db_url))), run_dir)
        assert r.status_code == status, r.text
        if status == 201:
            assert r.json()["metrics"]["accuracy"]["value"] == pytest.approx(0.5)
        else:
            assert "protocol options" in r.json()["reason"]
    finally:
        registry._tasks.pop(OptionsToyTask.name, None)


def test_concurrent_resubmissions_of_one_run_store_it_once(db_url: str, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = TestClient(create_app(settings(db_url)))
    body = build_payload(write_run(tmp_path, "race", quarter_wrong))
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: client.post("/api/submit", content=body, headers=auth()).status_code,
                                range(4)))
    assert codes.count(201) == 1 and codes.count(200) == 3
    assert len(client.get("/api/tasks/sarcasm").json()["groups"][0]["rows"]) == 1


def test_a_scoring_crash_is_logged_in_full_but_names_no_board_file_to_submitters(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import harness.board.ingest as ingest

    def crash(*args, **kwargs):
        raise FileNotFoundError("/srv/board-data/mustard/secret/annotations.json: gone (see http://docs.example/x/y)")

    monkeypatch.setattr(ingest, "recompute", crash)
    client = TestClient(create_app(settings(db_url)))
    r = client.post("/api/submit", content=build_payload(write_run(tmp_path, "boom", quarter_wrong)), headers=auth())
    reason = r.json()["reason"]
    assert r.status_code == 500 and "FileNotFoundError: <path>: gone" in reason and "/srv" not in reason
    assert "http://docs.example/x/y" in reason  # URLs are not paths
    audit = client.get("/api/audit", headers=auth()).json()[0]  # every token holder reads the audit
    assert audit["outcome"] == "refused" and audit["reason"] == reason
    assert "/srv/board-data/mustard/secret/annotations.json" in caplog.text  # the operator's log has it all
