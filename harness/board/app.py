"""The board's web app: server-rendered pages (Jinja2, autoescaped), a JSON API that mirrors them,
CSV/Parquet export, and the submission endpoint. `create_app(BoardSettings(...))` builds it; `harness
board serve` runs it under uvicorn.

Writes need a bearer token from the token file (`SUBMITTER TOKEN` per line); tokens are compared in
constant time, kept only as hashes in memory, and never logged or echoed. Each attempt lands in the
append-only audit table with its outcome.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from harness.board import ranking, render
from harness.board.ingest import NAME_RE, Refused, ServerTask, check_manifest, load_server_task, parse_submission
from harness.board.store import BoardStore
from harness.core import HarnessError
from harness.leaderboard import BoardRow, reference_rows
from harness.registry import get_task, task_names

HERE = Path(__file__).resolve().parent


class JSONResponse(_StarletteJSON):
    """JSON through orjson: NaN (a metric without a value) becomes null instead of an error."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


@dataclass
class BoardSettings:
    db_url: str
    data_root: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # sha256(token) -> submitter
    quota_per_day: int = 50
    max_upload_bytes: int = 64 * 1024 * 1024
    n_boot: int = 1000
    seed: int = 0
    paired_rows: int = 20
    paired_boot: int = 1000
    references: Path | None = None  # folder of <task>.toml (default: the packaged leaderboards/references)
    roles: tuple[str, ...] = ()  # the board's scoring models, NAME=MODEL[@URL] (default: each task's own)


def load_tokens(path: Path) -> dict[str, str]:
    """`SUBMITTER TOKEN` per line (# comments); returns sha256(token) -> submitter."""
    out: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the token file: {exc.strerror}") from exc
    for i, line in enumerate(lines):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not NAME_RE.match(parts[0]) or len(parts[1]) < 16:
            raise HarnessError(f"{path}:{i + 1}: expected 'SUBMITTER TOKEN' (a name and a token of 16+ characters)")
        out[token_hash(parts[1])] = parts[0]
    return out


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_app(settings: BoardSettings) -> FastAPI:
    store = BoardStore(settings.db_url)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    env.filters["fmt"] = render.fmt
    env.filters["p"] = render.p_value
    app = FastAPI(title="harness board", docs_url="/api/docs", redoc_url=None, default_response_class=JSONResponse)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    server_tasks: dict[tuple[str, str], ServerTask] = {}
    views_cache: dict[tuple[str, str | None], tuple[tuple[int, int], list[ranking.Group]]] = {}

    def page(name: str, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx))

    def known_task(task: str) -> Any:
        if not NAME_RE.match(task) or task not in task_names():
            raise HTTPException(404, "no such task")
        return get_task(task)

    def valid_run_id(run_id: str) -> str:
        if not NAME_RE.match(run_id) or ".." in run_id:
            raise HTTPException(400, "invalid run id")
        return run_id

    def refs(task: str) -> list[BoardRow]:
        return reference_rows(task, settings.references)

    def task_view(task: str, protocol: str | None) -> dict[str, Any]:
        t = known_task(task)
        if protocol and protocol not in t.protocols:
            raise HTTPException(404, "no such protocol")
        version = store.version()
        key = (task, protocol)
        hit = views_cache.get(key)
        if hit is not None and hit[0] == version:
            groups = hit[1]
        else:  # ranking and paired tests change only when rows are added
            rows = store.measured(task)
            groups = ranking.build_groups(store, t, rows, protocol=protocol, paired_rows=settings.paired_rows,
                                          paired_boot=settings.paired_boot)
            views_cache[key] = (version, groups)
        references = [r for r in refs(task) if not protocol or r.protocol == protocol]
        return {"task": t, "groups": groups, "references": references, "protocol": protocol,
                "attempts": store.attempts(task), "baseline": ranking.baseline_solver(t)}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return page("index.html", tasks=tasks_json())

    def tasks_json() -> list[dict[str, Any]]:
        counts = store.counts()
        out = []
        for name in task_names():
            try:
                t = get_task(name)
            except Exception:  # noqa: BLE001 - a broken plugin must not hide the other tasks
                continue
            out.append({"task": name, "description": t.description,
                        "protocols": {p: counts.get(name, {}).get(p, 0) for p in t.protocols},
                        "rows": sum(counts.get(name, {}).values()), "references": len(refs(name))})
        return out

    @app.get("/api/tasks")
    def api_tasks() -> list[dict[str, Any]]:
        return tasks_json()

    @app.get("/task/{task}", response_class=HTMLResponse)
    def task_page(task: str, protocol: str | None = None, limit: int = Query(100, ge=0)) -> HTMLResponse:
        """One table per comparable group; the first `limit` rows of each (0 = all), ranked over all."""
        view = task_view(task, protocol)
        return page("task.html", limit=limit, **view)

    @app.get("/api/tasks/{task}")
    def api_task(task: str, protocol: str | None = None, limit: int = Query(0, ge=0)) -> dict[str, Any]:
        view = task_view(task, protocol)
        return {"task": task, "protocol": protocol, "groups": [render.group_json(g, limit) for g in view["groups"]],
                "references": [render.ref_json(r) for r in view["references"]], "attempts": view["attempts"]}

    @app.get("/api/tasks/{task}/rows.csv")
    def export_csv(task: str) -> Response:
        known_task(task)
        rows = export_rows(task)
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{task}.csv"'})

    @app.get("/api/tasks/{task}/rows.parquet")
    def export_parquet(task: str) -> Response:
        known_task(task)
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = export_rows(task)
        table = pa.Table.from_pylist(rows) if rows else pa.table({"run_id": pa.array([], pa.string())})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": f'attachment; filename="{task}.parquet"'})

    def export_rows(task: str) -> list[dict[str, Any]]:
        rows = store.measured(task)
        names: list[str] = []
        for r in rows:
            names += [n for n in r.metrics if n not in names]
        out = []
        for r in rows:
            d: dict[str, Any] = {"run_id": r.source, "protocol": r.protocol, "method": r.method,
                                 "scorer_version": r.extra.get("scorer_version"), "origin": r.extra.get("origin"),
                                 "submitter": r.extra.get("submitter"), "n_samples": r.n_samples,
                                 "n_errors": r.n_errors}
            for n in names:
                m = r.metrics.get(n, {})
                d[n], d[f"{n}_ci_low"], d[f"{n}_ci_high"] = m.get("value"), m.get("ci_low"), m.get("ci_high")
            out.append(d)
        return out

    def run_view(run_id: str) -> Any:
        run = store.run(valid_run_id(run_id))
        if run is None:
            raise HTTPException(404, "no such run")
        return run

    @app.get("/run/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str, fold: str | None = None, status: str | None = None,
                 offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> HTMLResponse:
        run = run_view(run_id)
        samples, total = browse(run.run_id, fold, status, offset, limit)
        rows = store.measured(run_id=run.run_id)
        if rows:  # metrics in the task's order, headline first
            order = render.metric_order(run.row["task"], run.row["protocol"])
            rows[0].metrics = dict(sorted(rows[0].metrics.items(), key=lambda kv: order.get(kv[0], len(order))))
        return page("run.html", run=run, row=rows[0] if rows else None, plots=store.plot_names(run.run_id),
                    samples=samples, total=total, fold=fold, status=status, offset=offset, limit=limit,
                    report_tables=render.report_tables(run.report))

    def browse(run_id: str, fold: str | None, status: str | None, offset: int, limit: int) -> tuple[list, int]:
        recs = store.records(run_id)
        if fold:
            recs = [r for r in recs if r.fold == fold]
        if status == "error":
            recs = [r for r in recs if not r.ok]
        elif status == "ok":
            recs = [r for r in recs if r.ok]
        return recs[offset:offset + limit], len(recs)

    @app.get("/api/runs/{run_id}")
    def api_run(run_id: str) -> dict[str, Any]:
        run = run_view(run_id)
        rows = store.measured(run_id=run.run_id)
        return {"run_id": run.run_id, "manifest": run.manifest, "origin": run.row.get("origin") or "local",
                "submitter": run.row.get("submitter"), "metrics": rows[0].metrics if rows else {},
                "report": run.report, "plots": [f"/run/{run.run_id}/plot/{n}" for n in store.plot_names(run.run_id)],
                "digest": run.digest, "artifacts": run.artifacts}

    @app.get("/api/runs/{run_id}/samples")
    def api_samples(run_id: str, fold: str | None = None, status: str | None = None,
                    offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        run = run_view(run_id)
        recs, total = browse(run.run_id, fold, status, offset, limit)
        return {"total": total, "offset": offset, "samples": [
            {"sample_id": r.sample_id, "fold": r.fold, "target": r.target, "prediction": r.prediction,
             "scores": r.scores, "error": r.error} for r in recs]}

    @app.get("/run/{run_id}/plot/{name}")
    def plot(run_id: str, name: str) -> Response:
        run = run_view(run_id)
        if not NAME_RE.match(name):
            raise HTTPException(400, "invalid plot name")
        png = store.plot(run.run_id, name)
        if png is None:
            raise HTTPException(404, "no such plot")
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    def bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return _submitter(settings.tokens, auth[7:].strip() if auth.lower().startswith("bearer ") else "")

    @app.get("/api/audit")
    def api_audit(request: Request, limit: int = Query(100, ge=1, le=1000)) -> Any:
        """The audit log, newest first (for token holders only)."""
        if bearer(request) is None:
            return JSONResponse({"status": "refused", "reason": "missing or unknown token"}, 401)
        return store.audit_rows(limit)

    @app.post("/api/submit")
    async def submit(request: Request) -> JSONResponse:
        submitter = bearer(request)
        if submitter is None:
            return JSONResponse({"status": "refused", "reason": "missing or unknown token"}, 401)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > settings.max_upload_bytes):
            reason = f"upload larger than {settings.max_upload_bytes} bytes"
            store.audit(submitter=submitter, outcome="refused", reason=reason)
            return JSONResponse({"status": "refused", "reason": reason}, 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_upload_bytes:
                reason = f"upload larger than {settings.max_upload_bytes} bytes"
                store.audit(submitter=submitter, outcome="refused", reason=reason)
                return JSONResponse({"status": "refused", "reason": reason}, 413)
        return await run_in_threadpool(ingest, submitter, bytes(body))

    def ingest(submitter: str, body: bytes) -> JSONResponse:
        from harness.board.ingest import recompute

        run_id = task = protocol = digest = None
        try:
            sub = parse_submission(body)
            digest = sub.digest
            run_id, task, protocol = check_manifest(sub.manifest)
            existing = store.digest_of(run_id)
            if existing == digest:
                store.audit(submitter=submitter, outcome="duplicate", reason="already on the board", run_id=run_id,
                            task=task, protocol=protocol, digest=digest)
                return JSONResponse({"status": "exists", "run_id": run_id, "url": f"/run/{run_id}"}, 200)
            if existing is not None:
                raise Refused(f"run id {run_id!r} is already on the board with different content", 409)
            if store.submissions_today(submitter) >= settings.quota_per_day:
                raise Refused(f"daily quota of {settings.quota_per_day} submissions reached", 429)
            key = (task, protocol)
            if key not in server_tasks:
                try:
                    server_tasks[key] = load_server_task(task, protocol, settings.data_root)
                except HarnessError as exc:
                    raise Refused(f"the board cannot load {task}/{protocol}: {exc}", 422) from exc
            scored = recompute(sub, server_tasks[key], n_boot=settings.n_boot, seed=settings.seed,
                               roles=settings.roles)
            try:
                store.add_submission(scored.manifest, scored.metrics, scored.headline, submitter=submitter,
                                     digest=digest, records=scored.records, report=scored.report,
                                     artifacts=sub.artifacts, replicates=scored.replicates, n_boot=settings.n_boot,
                                     seed=settings.seed, plots=scored.plots)
            except IntegrityError as exc:  # the same run id landed meanwhile (a concurrent re-submission)
                if store.digest_of(run_id) == digest:
                    store.audit(submitter=submitter, outcome="duplicate", reason="already on the board",
                                run_id=run_id, task=task, protocol=protocol, digest=digest)
                    return JSONResponse({"status": "exists", "run_id": run_id, "url": f"/run/{run_id}"}, 200)
                raise Refused(f"run id {run_id!r} is already on the board with different content", 409) from exc
        except Refused as exc:
            store.audit(submitter=submitter, outcome="refused", reason=exc.reason, run_id=run_id, task=task,
                        protocol=protocol, digest=digest)
            return JSONResponse({"status": "refused", "reason": exc.reason}, exc.status)
        except Exception as exc:  # noqa: BLE001 - audited, and the submitter learns what failed
            reason = f"the board failed to score this run: {type(exc).__name__}: {str(exc)[:300]}"
            store.audit(submitter=submitter, outcome="refused", reason=reason, run_id=run_id, task=task,
                        protocol=protocol, digest=digest)
            return JSONResponse({"status": "refused", "reason": reason}, 500)
        store.audit(submitter=submitter, outcome="accepted", reason="re-scored by the board", run_id=run_id, task=task,
                    protocol=protocol, digest=digest)
        return JSONResponse({"status": "accepted", "run_id": run_id, "url": f"/run/{run_id}",
                             "metrics": {k: v.to_dict() for k, v in scored.metrics.items()}}, 201)

    app.state.store = store
    app.state.settings = settings
    return app


def _submitter(tokens: dict[str, str], token: str) -> str | None:
    if not token:
        return None
    h = token_hash(token)
    found = None
    for known, name in tokens.items():  # constant time per entry; no early exit
        if hmac.compare_digest(known, h):
            found = name
    return found
