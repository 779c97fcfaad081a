"""The board's web app: server-rendered pages (Jinja2, autoescaped), a JSON API that mirrors them,
CSV/Parquet export, and the submission endpoint. `create_app(BoardSettings(...))` builds it; `harness
board serve` runs it under uvicorn.

Writes need a bearer token from the token file (`SUBMITTER TOKEN` per line); tokens are compared in
constant time, kept only as hashes in memory, and never logged or echoed. Each attempt lands in the
append-only audit table with its outcome.

Uploaded artifact files (protected images) are kept content-addressed in `artifacts_dir` (an
`ArtifactStore`, the runs' own layout) once their run is accepted; the run page shows the images among
them as thumbnails, served only by references the store itself validates. Tasks with `pareto_axes`
get a privacy–utility Pareto plot per group, drawn on request and cached until a row is added.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.responses import JSONResponse as _StarletteJSON
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from harness.artifacts import ArtifactStore
from harness.board import ranking, render
from harness.board.ingest import NAME_RE, Refused, ServerTask, check_manifest, load_server_task, parse_submission
from harness.board.plots import ParetoPoint, pareto_front, pareto_png, pareto_points
from harness.board.store import BoardStore
from harness.core import HarnessError
from harness.leaderboard import BoardRow, reference_rows
from harness.registry import get_task, task_names

HERE = Path(__file__).resolve().parent

_log = logging.getLogger("harness.board")
# Absolute paths (of the board's data, its temporary folders) in an error shown to a submitter.
_PATH_RE = re.compile(r"(?<![\w.:/])(?:/[^\s'\"/:,()]+){2,}/?")


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
    artifacts_dir: Path | None = None  # uploaded artifact files, content-addressed (None: not kept)
    max_artifact_bytes: int = 16 * 1024 * 1024  # larger files are scored but not kept


IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}  # artifacts shown as thumbnails


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
    pareto_cache: dict[tuple[str, str, str | None], tuple[tuple[int, int], bytes]] = {}
    run_refs_cache: dict[str, frozenset[str]] = {}  # run id -> its records' artifact refs (runs never change)
    art_store = ArtifactStore(settings.artifacts_dir) if settings.artifacts_dir is not None else None

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
        pareto = {g.key: pareto_url(view["task"], g) for g in view["groups"] if pareto_of(view["task"], g)}
        return page("task.html", limit=limit, pareto=pareto, **view)

    @app.get("/api/tasks/{task}")
    def api_task(task: str, protocol: str | None = None, limit: int = Query(0, ge=0)) -> dict[str, Any]:
        view = task_view(task, protocol)
        groups = []
        for g in view["groups"]:
            gj = render.group_json(g, limit)
            found = pareto_of(view["task"], g)
            if found:
                (x, y), pts, higher = found
                front = set(pareto_front([(p.x, p.y) for p in pts], higher))
                gj["pareto"] = {"x": x, "y": y, "higher_is_better": list(higher), "png": pareto_url(view["task"], g),
                                "points": [{"run_id": p.run_id, "method": p.label, "x": p.x, "y": p.y,
                                            "on_front": i in front} for i, p in enumerate(pts)]}
            groups.append(gj)
        return {"task": task, "protocol": protocol, "groups": groups,
                "references": [render.ref_json(r) for r in view["references"]], "attempts": view["attempts"]}

    def pareto_of(t: Any, g: ranking.Group) -> tuple[tuple[str, str], list[ParetoPoint], tuple[bool, bool]] | None:
        """(axes, points, higher-is-better per axis) of a group whose task has `pareto_axes` and at least
        two runs with both metrics; else None."""
        axes = getattr(t, "pareto_axes", None)
        if not axes:
            return None
        rows = [it["row"] for it in g.rows]
        pts = pareto_points(rows, axes[0], axes[1])
        if len(pts) < 2:
            return None
        x, y = axes
        return (x, y), pts, (direction(t, g.protocol, rows, x), direction(t, g.protocol, rows, y))

    def direction(t: Any, protocol: str, rows: list[BoardRow], name: str) -> bool:
        """The stored metric values' higher_is_better; the task's metric definition when none is stored."""
        for r in rows:
            h = (r.metrics.get(name) or {}).get("higher_is_better")
            if isinstance(h, bool):
                return h
        defs = t.metrics(protocol) if protocol in t.protocols else []
        return next((m.higher_is_better for m in defs if m.name == name), True)

    def pareto_url(t: Any, g: ranking.Group) -> str:
        q = urlencode({"protocol": g.protocol, "scorer": g.scorer_version or "", "data": g.data_fingerprint})
        return f"/task/{t.name}/pareto.png?{q}"

    def pareto_response(t: Any, g: ranking.Group, highlight: str | None) -> Response:
        found = pareto_of(t, g)
        if found is None:
            raise HTTPException(404, "no Pareto plot: fewer than two runs with both metrics")
        version = store.version()
        key = (t.name, g.key, highlight)
        hit = pareto_cache.get(key)
        if hit is None or hit[0] != version:
            (x, y), pts, higher = found
            png = pareto_png(pts, x, y, higher, f"{t.name} / {g.protocol}: {y} vs {x}", highlight=highlight)
            if len(pareto_cache) > 256:
                pareto_cache.clear()
            pareto_cache[key] = hit = (version, png)
        return Response(hit[1], media_type="image/png", headers={"Cache-Control": "max-age=60"})

    @app.get("/task/{task}/pareto.png")
    def task_pareto(task: str, protocol: str, scorer: str = "", data: str = "") -> Response:
        """The Pareto plot of one comparable group (protocol, scorer version, data fingerprint)."""
        t = known_task(task)
        view = task_view(task, protocol if protocol in t.protocols else None)
        g = next((g for g in view["groups"] if g.protocol == protocol and (g.scorer_version or "") == scorer
                  and g.data_fingerprint == data), None)
        if g is None:
            raise HTTPException(404, "no such group")
        return pareto_response(t, g, None)

    def run_group(run: Any) -> tuple[Any, ranking.Group] | None:
        """The task and the group of the task page that holds this run (None: a task no longer known, or
        one without `pareto_axes`)."""
        try:
            t = known_task(run.row["task"])
        except HTTPException:
            return None
        if not getattr(t, "pareto_axes", None):  # the only user: no ranking work for other tasks' run pages
            return None
        protocol = run.row["protocol"]
        view = task_view(t.name, protocol if protocol in t.protocols else None)
        g = next((g for g in view["groups"] if any(it["row"].source == run.run_id for it in g.rows)), None)
        return None if g is None else (t, g)

    @app.get("/run/{run_id}/pareto.png")
    def run_pareto(run_id: str) -> Response:
        """The run's group's Pareto plot with this run ringed."""
        run = run_view(run_id)
        found = run_group(run)
        if found is None:
            raise HTTPException(404, "no Pareto plot for this run")
        return pareto_response(found[0], found[1], run.run_id)

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
        thumbs = [[(name, ref, f"/run/{run.run_id}/artifact/{ref}" if stored_image(ref) else None)
                   for name, ref in sorted((getattr(r, "artifacts", None) or {}).items())] for r in samples]
        return page("run.html", run=run, row=rows[0] if rows else None, plots=store.plot_names(run.run_id),
                    samples=samples, total=total, fold=fold, status=status, offset=offset, limit=limit,
                    report_tables=render.report_tables(run.report), thumbs=thumbs,
                    pareto=run_pareto_url(run))

    def run_pareto_url(run: Any) -> str | None:
        """The run's Pareto plot when it is a point of one (its group has two or more)."""
        found = run_group(run)
        pf = pareto_of(*found) if found is not None else None
        return f"/run/{run.run_id}/pareto.png" if pf and any(p.run_id == run.run_id for p in pf[1]) else None

    def stored_image(ref: Any) -> Path | None:
        """The stored file of an image artifact reference, validated by the store itself (a content
        address `ab/cdef….ext`, nothing else); None when not an image, not valid or not kept."""
        if art_store is None or not isinstance(ref, str) or ref.rsplit(".", 1)[-1] not in IMAGE_TYPES:
            return None
        try:
            return art_store.path(ref)
        except HarnessError:
            return None

    def run_refs(run_id: str) -> frozenset[str]:
        if run_id not in run_refs_cache:
            if len(run_refs_cache) > 1000:
                run_refs_cache.clear()
            run_refs_cache[run_id] = frozenset(ref for r in store.records(run_id)
                                               for ref in (getattr(r, "artifacts", None) or {}).values()
                                               if isinstance(ref, str))
        return run_refs_cache[run_id]

    @app.get("/run/{run_id}/artifact/{prefix}/{name}")
    def artifact(run_id: str, prefix: str, name: str) -> Response:
        """An image artifact of this run's records, as uploaded (bytes checked against their sha256)."""
        run = run_view(run_id)
        ref = f"{prefix}/{name}"
        path = stored_image(ref)
        if path is None or ref not in run_refs(run.run_id):
            raise HTTPException(404, "no such image artifact")
        return FileResponse(path, media_type=IMAGE_TYPES[ref.rsplit(".", 1)[-1]],
                            headers={"Cache-Control": "max-age=86400, immutable", "X-Content-Type-Options": "nosniff"})

    def keep_artifacts(files: dict[str, bytes], records: list[Any]) -> None:
        """Store the uploaded files the accepted run's records reference (their digests were checked on
        parsing; the store names each by its own sha256 again). A file that cannot be written only
        costs its thumbnail: the run is scored and stored already."""
        if art_store is None:
            return
        used = {ref for r in records for ref in (getattr(r, "artifacts", None) or {}).values()}
        for ref, content in files.items():
            if ref not in used or len(content) > settings.max_artifact_bytes:
                continue
            try:
                art_store.put_bytes(content, ref.rsplit(".", 1)[1])
            except (OSError, HarnessError):
                continue

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
                "digest": run.digest, "artifacts": run.artifacts, "pareto": run_pareto_url(run)}

    @app.get("/api/runs/{run_id}/samples")
    def api_samples(run_id: str, fold: str | None = None, status: str | None = None,
                    offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        run = run_view(run_id)
        recs, total = browse(run.run_id, fold, status, offset, limit)
        return {"total": total, "offset": offset, "samples": [
            {"sample_id": r.sample_id, "fold": r.fold, "target": r.target, "prediction": r.prediction,
             "scores": r.scores, "error": r.error, "artifacts": getattr(r, "artifacts", None) or {}} for r in recs]}

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

    quota_lock = threading.Lock()
    in_flight: dict[str, int] = {}  # submitter -> submissions being scored now (not yet in the audit)

    def ingest(submitter: str, body: bytes) -> JSONResponse:
        counted: list[bool] = []
        try:
            return _ingest(submitter, body, counted)
        finally:
            if counted:  # its audit row is written by now and counts instead
                with quota_lock:
                    in_flight[submitter] -= 1

    def _ingest(submitter: str, body: bytes, counted: list[bool]) -> JSONResponse:
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
            with quota_lock:  # attempts being scored count too: concurrent submissions cannot overrun it
                if store.submissions_today(submitter) + in_flight.get(submitter, 0) >= settings.quota_per_day:
                    raise Refused(f"daily quota of {settings.quota_per_day} submissions reached", 429)
                in_flight[submitter] = in_flight.get(submitter, 0) + 1
                counted.append(True)
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
            # The server's log gets the whole traceback; the submitter (and the audit, which every token
            # holder may read) a reason that names no file of the board's machine.
            _log.exception("scoring run %r failed", run_id)
            reason = _PATH_RE.sub("<path>", f"the board failed to score this run: {type(exc).__name__}: "
                                            f"{str(exc)[:300]} (the board's log has the details)")
            store.audit(submitter=submitter, outcome="refused", reason=reason, run_id=run_id, task=task,
                        protocol=protocol, digest=digest)
            return JSONResponse({"status": "refused", "reason": reason}, 500)
        keep_artifacts(sub.files, scored.records)
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
