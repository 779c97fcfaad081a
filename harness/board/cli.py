"""The `harness board serve` and `harness submit` subcommands (kept here so harness/cli.py stays short;
FastAPI and uvicorn are imported only when a board command runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser("board", help="the shared web leaderboard (`harness board serve`)")
    bsub = sp.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    sv = bsub.add_parser("serve", help="serve the board: pages, JSON API, exports, submissions")
    sv.add_argument("--db", default=None, help="SQLAlchemy URL (default: HARNESS_DB or sqlite:///board.sqlite; "
                    "postgresql+psycopg://user@host/harness for a lab)")
    sv.add_argument("--data", type=Path, default=None,
                    help="the board's own data root, one folder per dataset (default: HARNESS_DATA); "
                    "submissions are scored against it")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8765)
    sv.add_argument("--token-file", type=Path, default=None,
                    help="'SUBMITTER TOKEN' per line; without it the board is read-only")
    sv.add_argument("--quota", type=int, default=50, help="submissions per submitter per UTC day (default 50)")
    sv.add_argument("--max-upload-mb", type=float, default=64.0, help="largest accepted submission (default 64)")
    sv.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for CIs and rank intervals")
    sv.add_argument("--role", action="append", default=[], metavar="NAME=MODEL[@URL]",
                    help="a model the board scores with (repeatable; default: each task's own, e.g. recognizer=dlib)")
    sv.add_argument("--paired-rows", type=int, default=20,
                    help="rows per table that get paired tests against the leader and baseline (default 20)")
    sv.add_argument("--artifacts", type=Path, default=Path("board-artifacts"),
                    help="folder where uploaded artifact files are kept, content-addressed, for the run pages' "
                    "thumbnails (default ./board-artifacts)")
    sv.add_argument("--max-artifact-mb", type=float, default=16.0,
                    help="largest artifact file kept (larger ones are scored but not kept; default 16)")

    sp = sub.add_parser("submit", help="submit a finished run to a board, which re-scores it")
    sp.add_argument("run_dir", type=Path, help="the run folder (runs/<run_id>)")
    sp.add_argument("--to", required=True, metavar="URL", help="the board, e.g. http://board.lab:8765")
    sp.add_argument("--token", default=None, help="submitter token (default: HARNESS_BOARD_TOKEN)")
    sp.add_argument("--no-artifacts", action="store_true",
                    help="send only the artifacts' digests, not their files (for tasks whose scorer ignores them)")


def cmd_board(args: argparse.Namespace) -> int:
    import uvicorn

    from harness.board.app import BoardSettings, create_app, load_tokens

    data = args.data or (Path(os.environ["HARNESS_DATA"]) if os.environ.get("HARNESS_DATA") else None)
    settings = BoardSettings(
        db_url=args.db or os.environ.get("HARNESS_DB") or f"sqlite:///{Path('board.sqlite').resolve()}",
        data_root=data, tokens=load_tokens(args.token_file) if args.token_file else {},
        quota_per_day=args.quota, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), n_boot=args.bootstrap,
        paired_rows=args.paired_rows, roles=tuple(args.role), artifacts_dir=args.artifacts.resolve(),
        max_artifact_bytes=int(args.max_artifact_mb * 1024 * 1024),
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from harness.board.client import submit

    answer = submit(args.run_dir, args.to, args.token or os.environ.get("HARNESS_BOARD_TOKEN"),
                    with_files=not args.no_artifacts)
    con = Console()
    status = str(answer.get("status"))
    url = args.to.rstrip("/") + str(answer.get("url", ""))
    con.print(f"{escape(status)}: {escape(str(answer.get('run_id')))} → {escape(url)}", soft_wrap=True)
    for name, m in (answer.get("metrics") or {}).items():
        s = m.get("scale", 1.0)
        lo, hi = m.get("ci_low"), m.get("ci_high")
        ci = f" [{lo * s:.2f}, {hi * s:.2f}]" if lo is not None and hi is not None else ""
        con.print(f"  {escape(name)} {m['value'] * s:.2f}{ci} (re-scored by the board)" if m.get("value") is not None
                  else f"  {escape(name)} —")
    return 0


COMMANDS = {"board": cmd_board, "submit": cmd_submit}
