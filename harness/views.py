"""Terminal and file renderings for the CLI (rich tables; CSV, JSON and HTML for the board)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.rundir import record_to_dict

if TYPE_CHECKING:  # sqlalchemy is imported only by commands that use the board
    from harness.leaderboard import BoardRow

# Rich wraps at 80 columns when not writing to a terminal; logs and pipes get room for wide tables.
console = Console(width=None if sys.stdout.isatty() else 160)
TABLE_METRICS = 3  # metrics shown in the terminal board unless --metrics names others


def _e(value: Any) -> str:
    """Any user- or server-supplied string (names, options, paths, errors) as rich prints it literally."""
    return escape(str(value))


def _fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def print_run_summary(result: Any) -> None:
    n = len(result.records)
    t = Table(title=_e(f"{result.config.task} / {result.config.protocol} · {result.config.solver}"
                       + (f" · {result.config.model}" if result.config.model else "")))
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("95% CI (bootstrap)", justify="right")
    for m in result.metrics.values():
        lo, hi = m.ci_low * m.scale, m.ci_high * m.scale
        t.add_row(_e(m.name), _fmt(m.value * m.scale, 2), _e(f"[{_fmt(lo, 2)}, {_fmt(hi, 2)}]"))
    console.print(t)
    console.print(
        f"samples: {n} · from cache: {result.n_cached} · computed: {n - result.n_cached} · "
        f"errored: {result.n_errors} · {result.wall_s:.2f} s"
    )
    if result.n_errors:
        errs = sorted({r.error for r in result.records if r.error})
        console.print(f"[red]{result.n_errors} errored samples[/red] (excluded from metrics; re-run retries them)."
                      f" First error: {_e(errs[0])}")
    print_model_calls(_run_model_calls(result.records))
    console.print(f"run {_e(result.run_id)} → {_e(result.run_dir)}", highlight=False, soft_wrap=True)


TAXONOMY = ("truncated", "unparseable", "schema_fallback", "request_error", "judge_error")


def _run_model_calls(records: list[Any]) -> dict[str, Any]:
    from harness.transcripts import summarise

    try:
        return summarise(records)
    except Exception:  # accounting never costs the summary its metrics (metrics.json says what failed)
        return {}


def print_model_calls(summary: dict[str, Any]) -> None:
    """The run's model calls, tokens and failure counts (metrics.json → model_calls) in one line; judge
    errors in red with the judges that failed every call, so a dead judge endpoint is seen where the run
    ends, not only in metrics.json (its samples' labels then rest on the other judges, or they errored)."""
    if not summary or "calls" not in summary:
        return
    counts = " · ".join(f"{name.replace('_', ' ')} {summary.get(name, 0)}" for name in TAXONOMY)
    console.print(_e(f"model calls: {summary['calls']} ({summary.get('cached_calls', 0)} cached) · tokens "
                     f"{summary.get('prompt_tokens', 0)} prompt + {summary.get('completion_tokens', 0)} completion · "
                     f"{counts}"), highlight=False)
    if summary.get("judge_error"):
        failed = summary.get("judges_failed_every_call") or []
        console.print(f"[red]{summary['judge_error']} judge call(s) failed[/red]"
                      + (f"; every call of {_e(', '.join(failed))} failed (one server serves one model: give each "
                         "judge its own endpoint, --judge MODEL@URL)" if failed else ""), highlight=False)


def print_tasks(data_root: Path | None) -> None:
    from harness.registry import get_task, task_names

    t = Table(title="tasks")
    for col in ("task", "protocols", "default solver", "data"):
        t.add_column(col)
    for name in task_names():
        try:
            task = get_task(name)
        except Exception as exc:  # one broken plugin must not hide the others
            t.add_row(_e(name), "", "", f"[red]failed to load: {_e(exc)}")
            continue
        protos = ", ".join(f"{p}{'*' if p == task.default_protocol else ''}" for p in task.protocols)
        t.add_row(_e(name), _e(protos), _e(task.default_solver), _e(task.data_status(data_root)))
    console.print(t)
    console.print("* default protocol")


def print_solvers(task: str | None) -> None:
    from harness.registry import solvers_for, task_names

    t = Table(title=f"solvers for {_e(task)}" if task else "solvers", show_lines=True)
    for col in ("task", "solver", "kind", "description", "options (-S name=value): type = default  help"):
        t.add_column(col)
    for name in [task] if task else task_names():
        for e in solvers_for(name):
            t.add_row(_e(name), _e(e.name), _e(e.kind), _e(e.description), _options_cell(e.solver_cls))
    console.print(t)


def _options_cell(solver_cls: Any) -> str:
    """One line per declared option, escaped for rich (types like list[float] look like markup)."""
    from harness.options import option_rows

    if solver_cls is None:
        return ""
    rows = option_rows(solver_cls.Options)
    if not rows:
        return "[dim](none)[/dim]"
    return "\n".join(
        f"[bold]{_e(r.name)}[/bold]: {_e(r.type)} = {'(required)' if r.required else _e(repr(r.default))}"
        + (f"  [dim]{_e(r.help)}[/dim]" if r.help else "")
        for r in rows
    )


def _metric_names(rows: list[BoardRow], wanted: list[str] | None) -> list[str]:
    if wanted:
        return wanted
    names: list[str] = []
    for r in rows:
        for k in r.metrics:
            if k not in names:
                names.append(k)
    return names


def _cell(row: BoardRow, name: str) -> str:
    m = row.metrics.get(name)
    if not m or m.get("value") is None:
        return ""
    s = _fmt(m["value"])
    if m.get("ci_low") is not None and m.get("ci_high") is not None:
        s += f" [{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]"
    return s


def print_board(rows: list[BoardRow], fmt: str, wanted: list[str] | None = None, out: Any = None) -> None:
    out = out or sys.stdout
    names = _metric_names(rows, wanted)
    if fmt == "json":
        out.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        return
    if fmt == "csv":
        w = csv.writer(out)
        metric_cols = [f"{n}{s}" for n in names for s in ("", "_ci_low", "_ci_high")]
        w.writerow(["kind", "task", "protocol", "method", *metric_cols, "n_samples", "n_errors", "source",
                    "verified", "note"])
        for r in rows:
            vals = []
            for n in names:
                m = r.metrics.get(n, {})
                vals += [m.get("value"), m.get("ci_low"), m.get("ci_high")]
            w.writerow([r.kind, r.task, r.protocol, r.method, *vals, r.n_samples, r.n_errors, r.source,
                        r.verified, r.note])
        return
    if fmt == "html":
        out.write(board_html(rows, names))
        return
    if not wanted:
        names = names[:TABLE_METRICS]  # headline first; --metrics or csv/json for the rest
    width = None if getattr(out, "isatty", lambda: False)() else 200
    con = Console(file=out, width=width)
    for kind, title in (("measured", "measured runs (95% bootstrap CI)"), ("reference", "reference rows (papers)")):
        part = [r for r in rows if r.kind == kind]
        t = Table(title=title)
        for col in ("task", "protocol", "method", *names):
            t.add_column(_e(col), justify="right" if col in names else "left")
        if kind == "measured":
            t.add_column("n")
            t.add_column("run", overflow="fold")
        else:
            t.add_column("verified")
            t.add_column("source", overflow="fold")
        for r in part:
            last = (f"{r.n_samples}" + (f" ({r.n_errors} err)" if r.n_errors else "")) if kind == "measured" else (
                "yes" if r.verified else "no")
            t.add_row(*(_e(c) for c in (r.task, r.protocol, r.method, *(_cell(r, n) for n in names), last, r.source)))
        if not part:
            t.add_row(*(["(none)"] + [""] * (len(names) + 4)))
        con.print(t)


def board_html(rows: list[BoardRow], names: list[str]) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["kind", "task", "protocol", "method", *names, "source"])
    body = []
    for r in rows:
        cells = [r.kind, r.task, r.protocol, r.method, *(_cell(r, n) for n in names), r.source]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (
        "<!doctype html><meta charset='utf-8'><title>harness leaderboard</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "tr td:first-child{color:#666}</style><h1>harness leaderboard</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"
    )


def print_show(manifest: dict, records: list, metrics: dict, n_samples: int = 5) -> None:
    cfg = manifest["config"]
    console.print(f"[bold]{_e(manifest['run_id'])}[/bold] · status {_e(manifest.get('status'))} · "
                  f"{_e(manifest.get('started'))} → {_e(manifest.get('finished'))}")
    console.print(_e(f"task {cfg['task']} / {cfg['protocol']} · solver {cfg['solver']} "
                     f"{cfg.get('solver_options') or ''} · model {cfg.get('model')} · seed {cfg.get('seed')} · "
                     f"config hash {manifest.get('config_hash')}"))
    console.print(_e(f"data {manifest.get('data')} (fingerprint {manifest.get('data_fingerprint')}) · "
                     f"git {manifest.get('git_commit')}"))
    t = Table(title="metrics")
    for col in ("metric", "value", "95% CI"):
        t.add_column(col)
    for name, m in (metrics.get("metrics") or {}).items():
        s = m.get("scale", 1.0)
        value, lo, hi = m.get("value"), m.get("ci_low"), m.get("ci_high")  # null when no sample was scored
        t.add_row(_e(name), _fmt(value * s if value is not None else None, 2),
                  _e(f"[{_fmt(lo * s if lo is not None else None, 2)}, {_fmt(hi * s if hi is not None else None, 2)}]"))
    console.print(t)
    console.print(f"samples {metrics.get('n_samples')} · errored {metrics.get('n_errors')} · "
                  f"cached {metrics.get('n_cached')}")
    print_model_calls(metrics.get("model_calls") or {})
    for r in records[:n_samples]:
        d = record_to_dict(r)
        d.pop("groups", None)
        text = json.dumps(d, ensure_ascii=False, default=str)
        console.print(text[:400] + ("…" if len(text) > 400 else ""), markup=False, highlight=False)


def print_sample(run_dir: Path, sample_id: str) -> None:
    """One sample in full: its record (every split it was solved in), artifacts with their paths, and
    the model calls transcripts.jsonl holds for it."""
    from harness.core import HarnessError
    from harness.rundir import read_samples

    records = [r for r in read_samples(run_dir / "samples.jsonl") if r.sample_id == sample_id]
    if not records:
        raise HarnessError(f"{run_dir / 'samples.jsonl'}: no sample {sample_id!r}")
    store = run_dir.parent / "artifacts"
    for r in records:
        d = record_to_dict(r)
        artifacts = d.pop("artifacts", {}) or {}
        console.print(f"[bold]{_e(r.sample_id)}[/bold] · fold {_e(r.fold)} · split {_e(r.split)}"
                      + (f" · [red]error[/red] {_e(r.error)}" if r.error else ""))
        console.print(json.dumps(d, ensure_ascii=False, indent=2, default=str), markup=False, highlight=False)
        if artifacts:
            t = Table(title="artifacts")
            for col in ("name", "ref", "path"):
                t.add_column(col)
            for name, ref in artifacts.items():
                path = store / str(ref)
                t.add_row(_e(name), _e(str(ref)), _e(str(path) + ("" if path.is_file() else " (missing)")))
            console.print(t)
    print_sample_calls(run_dir, sample_id)


def _content_text(content: Any) -> str:
    """A transcript message's content as text: media as their digest, frame count and timestamps."""
    if isinstance(content, str):
        return content
    out = []
    for part in content or []:
        if part.get("type") == "text":
            out.append(str(part.get("text", "")))
        elif part.get("type") == "video":
            times = ", ".join(f"{t:g}" for t in part.get("timestamps_s") or [])
            out.append(f"[video {part.get('path', '')} {part.get('digest', '')} as {part.get('as', 'frames')}: "
                       f"{part.get('frames', '?')} frames at {times} s]")
        else:
            out.append(f"[{part.get('type')} {part.get('path') or ''} {part.get('digest', '')}]".replace("  ", " "))
    return "\n".join(out)


def print_sample_calls(run_dir: Path, sample_id: str) -> None:
    """The sample's conversation from transcripts.jsonl, call by call in order, each headed by its agent
    (or judge), with a per-agent table of calls and tokens first. Every string is escaped."""
    from harness.transcripts import read_transcripts, summarise

    calls = read_transcripts(run_dir / "transcripts.jsonl", sample_id)
    if not calls:
        console.print("no model calls recorded for this sample in transcripts.jsonl")
        return
    summary = summarise(calls)
    t = Table(title=_e(f"model calls of {sample_id}"))
    for col in ("agent", "calls", "prompt tokens", "completion tokens", "errors"):
        t.add_column(col, justify="right" if col != "agent" else "left")
    for role, row in summary["by_role"].items():
        t.add_row(_e(role), str(row["calls"]), str(row["prompt_tokens"]), str(row["completion_tokens"]),
                  str(row["errors"]))
    console.print(t)
    for i, call in enumerate(calls, 1):
        flags = [name for name in ("cached", "truncated", "unparseable", "schema_fallback") if call.get(name)]
        tokens = f"{call.get('prompt_tokens', 0)}+{call.get('completion_tokens', 0)} tokens"
        head = (f"call {i} · {call.get('role') or 'solver'} · {call.get('model', '')} @ {call.get('endpoint', '')}"
                f" · {call.get('latency_s', 0):.2f} s · {tokens} · finish {call.get('finish_reason')}"
                + (" · " + ", ".join(flags) if flags else ""))
        console.rule(f"[bold]{_e(head)}[/bold]")
        params = call.get("params")
        if params:
            console.print(f"params: {_e(json.dumps(params, ensure_ascii=False))}", highlight=False)
        for message in call.get("messages") or []:
            console.print(f"[cyan]{_e(str(message.get('role')))}:[/cyan] {_e(_content_text(message.get('content')))}",
                          highlight=False)
        if call.get("error"):
            console.print(f"[red]error:[/red] {_e(str(call['error']))}", highlight=False)
        else:
            console.print(f"[green]answer:[/green] {_e(str(call.get('response', '')))}", highlight=False)


def print_comparison(c: Any) -> None:
    a, b = c.run_a, c.run_b
    t = Table(title=_e(f"{a['run_id']} (A) vs {b['run_id']} (B): paired bootstrap on shared samples"))
    for col in ("metric", "A", "B", "A − B", "95% CI", "p"):
        t.add_column(col, justify="right")
    for r in c.rows:
        s = r.scale
        t.add_row(_e(r.metric), _fmt(r.a * s, 2), _fmt(r.b * s, 2), _fmt(r.diff * s, 2),
                  _e(f"[{_fmt(r.ci_low * s, 2)}, {_fmt(r.ci_high * s, 2)}]"), f"{r.p_value:.4f}")
    console.print(t)
    n = c.rows[0].n_shared if c.rows else 0
    console.print(f"shared samples {n} · only in A {c.n_only_a} · only in B {c.n_only_b}")


def board_to_string(rows: list[BoardRow], fmt: str) -> str:
    buf = io.StringIO()
    print_board(rows, fmt, out=buf)
    return buf.getvalue()
