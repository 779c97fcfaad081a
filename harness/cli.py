"""`harness` command line. Configuration enters here once (flags, then environment variables) and
is passed down explicitly; nothing below reads the environment."""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.board.cli import COMMANDS as BOARD_COMMANDS
from harness.core import HarnessError

EPILOG = """examples:
  harness run --task sarcasm --solver tfidf --data PATH/mustard
  harness run --task sarcasm --model Qwen/Qwen2.5-VL-7B-Instruct --base-url http://localhost:8000/v1
  harness run --task rppg --protocol roi --solver pos -S band=recommended --data PATH
  harness leaderboard --task sarcasm --format csv
  harness compare RUN_A RUN_B

environment: HARNESS_DATA (data root, one folder per dataset), HARNESS_DB (SQLAlchemy URL of the
leaderboard), OPENAI_BASE_URL / OPENAI_API_KEY (endpoint for --model)."""


def _option(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as a Python literal when it is one (3, 0.5, True), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"solver option {text!r} is not key=value")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def _positive_int(text: str) -> int:
    """A whole number >= 1 (`--limit -3` would silently drop samples: refuse it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]: `--seed -1` or `--bootstrap -5` would otherwise end a finished run
    with a numpy traceback."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_seed = _int_in(0, 2**32 - 1)  # numpy and scikit-learn seeds
_replicates = _int_in(0)  # 0: no CIs
_retries = _int_in(0)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (`--timeout 0` would time every request out at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="harness", description="Evaluate solvers on human-centric multimodal benchmarks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: ./runs)")
        sp.add_argument("--db", default=None, help="leaderboard SQLAlchemy URL (default: HARNESS_DB or "
                        "sqlite:///<out>/leaderboard.sqlite; e.g. postgresql+psycopg://user@host/harness)")

    sp = sub.add_parser("tasks", help="list tasks, protocols and data status")
    sp.add_argument("--data", type=Path, default=None, help="data root (default: HARNESS_DATA)")

    sp = sub.add_parser("solvers", help="list solvers usable for a task")
    sp.add_argument("--task", default=None)

    sp = sub.add_parser("run", help="evaluate a solver on a task", epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--task", required=True, help="task id (see `harness tasks`)")
    sp.add_argument("--protocol", default="", help="protocol/split (default: the task's default)")
    sp.add_argument("--solver", default="", help="solver name (default: the task's weights-free solver, "
                    "or its zero-shot MLLM solver when --model is given)")
    sp.add_argument("-S", "--solver-option", dest="solver_options", action="append", type=_option, default=[],
                    metavar="KEY=VALUE", help="solver option, repeatable (e.g. -S features=utterance+context)")
    sp.add_argument("-P", "--protocol-option", dest="protocol_options", action="append", type=_option, default=[],
                    metavar="KEY=VALUE", help="protocol option, repeatable (e.g. -P order=M,C,I,O for pad_il's il)")
    sp.add_argument("--model", default=None, help="model name served at --base-url (vLLM, transformers serve)")
    sp.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL)")
    sp.add_argument("--judge", action="append", default=[], metavar="MODEL[@URL]",
                    help="MLLM judge, repeatable, each on its own endpoint (MODEL@http://host:port/v1; without "
                    "@URL the --base-url endpoint); judges vote and their agreement is reported")
    sp.add_argument("--role", action="append", default=[], metavar="NAME=MODEL[@URL]",
                    help="a model the scorer uses, repeatable: --role recognizer=dlib, "
                    "--role editor=tiny-random, --role judge=Qwen/Qwen2.5-VL-7B-Instruct@http://h:8001/v1")
    sp.add_argument("--data", type=Path, default=None, help="dataset folder (default: HARNESS_DATA/<dataset>)")
    sp.add_argument("--limit", type=_positive_int, default=None, help="only the first N test samples of each fold")
    sp.add_argument("--concurrency", type=_positive_int, default=8, help="samples in flight at once (default 8)")
    sp.add_argument("--executor", choices=("local", "ray"), default="local",
                    help="local asyncio, or Ray workers (RAY_ADDRESS picks a cluster)")
    sp.add_argument("--seed", type=_seed, default=0)
    sp.add_argument("--bootstrap", type=_replicates, default=1000, help="bootstrap replicates for CIs (default 1000)")
    sp.add_argument("--timeout", type=_seconds, default=120.0, help="seconds per model request (default 120)")
    sp.add_argument("--max-retries", type=_retries, default=8,
                    help="retries of one model request on 429/5xx/timeouts, with back-off (default 8)")
    sp.add_argument("--no-cache", action="store_true", help="recompute every sample (refreshes the cache)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(sp)

    sp = sub.add_parser("leaderboard", help="measured runs next to the papers' reference numbers")
    sp.add_argument("--task", default=None)
    sp.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    sp.add_argument("--metrics", default=None, help="comma-separated metric names to show (default: all)")
    common(sp)

    sp = sub.add_parser("show", help="metrics, config and a few samples of one run")
    sp.add_argument("run_id")
    sp.add_argument("--samples", type=int, default=5, help="samples to print (default 5)")
    sp.add_argument("--sample", default=None, metavar="ID",
                    help="one sample in full: prediction, scores, artifacts (paths) and its model calls")
    common(sp)

    sp = sub.add_parser("score", help="re-score a finished run from its predictions (after a scorer fix)")
    sp.add_argument("run_id", help="run id (or a unique prefix, or a run folder)")
    sp.add_argument("--into", type=Path, default=None, metavar="DIR",
                    help="write the new metrics.json/samples.jsonl there instead of into the run folder")
    sp.add_argument("--bootstrap", type=_replicates, default=None, help="bootstrap replicates (default: the run's)")
    common(sp)

    sp = sub.add_parser("compare", help="paired comparison of two runs on the samples both scored")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.add_argument("--bootstrap", type=_replicates, default=2000)
    sp.add_argument("--seed", type=_seed, default=0)
    common(sp)

    sp = sub.add_parser("doctor", help="environment, data and endpoint pre-flight (one line per check, with a fix)")
    sp.add_argument("--data", type=Path, default=None, help="data root (default: HARNESS_DATA)")
    sp.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint to probe (default: OPENAI_BASE_URL)")
    sp.add_argument("--no-gpu", action="store_true", help="skip the GPU check (it imports torch)")
    common(sp)

    from harness.board.cli import add_parsers  # `board serve` and `submit`

    add_parsers(sub)
    return p


def _db_url(args: argparse.Namespace) -> str:
    from harness.leaderboard import default_db_url

    return args.db or os.environ.get("HARNESS_DB") or default_db_url(args.out)


def _data_path(args: argparse.Namespace, task: Any) -> Path | None:
    if args.data is not None:
        return args.data
    root = os.environ.get("HARNESS_DATA")
    if not (root and task.data_folder):
        return None
    path = Path(root) / task.data_folder
    if not path.exists():  # say where the path came from (a lab-wide HARNESS_DATA may lack this dataset)
        raise HarnessError(f"{path}: data folder does not exist (HARNESS_DATA={root} has no {task.data_folder!r} "
                           f"folder: add it, pass --data, or unset HARNESS_DATA for the task's default)")
    return path


def cmd_run(args: argparse.Namespace) -> int:
    from harness import views
    from harness.registry import get_task
    from harness.runner import RunConfig, RunSettings, run

    task = get_task(args.task)
    solver = args.solver or (task.mllm_solver if args.model and task.mllm_solver else task.default_solver)
    config = RunConfig(
        task=args.task, protocol=args.protocol, solver=solver, solver_options=tuple(args.solver_options),
        protocol_options=tuple(args.protocol_options),
        model=args.model, judges=tuple(args.judge), roles=tuple(args.role), limit=args.limit, seed=args.seed,
        n_boot=args.bootstrap,
    )
    settings = RunSettings(
        data=_data_path(args, task), base_url=args.base_url or os.environ.get("OPENAI_BASE_URL"),
        api_key=os.environ.get("OPENAI_API_KEY"), concurrency=args.concurrency, executor=args.executor,
        out_dir=args.out, db_url=_db_url(args), use_cache=not args.no_cache,
        show_progress=not args.no_progress and sys.stderr.isatty(), request_timeout_s=args.timeout,
        max_retries=args.max_retries,
    )
    result = run(config, settings)
    views.print_run_summary(result)
    if result.cache_error:
        print(f"harness: error: {result.cache_error}", file=sys.stderr)
        return 3
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from harness import views

    views.print_tasks(args.data or (Path(os.environ["HARNESS_DATA"]) if os.environ.get("HARNESS_DATA") else None))
    return 0


def cmd_solvers(args: argparse.Namespace) -> int:
    from harness import views

    views.print_solvers(args.task)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness import views
    from harness.leaderboard import Leaderboard, reference_rows

    board = Leaderboard(_db_url(args))
    measured = board.measured(args.task)
    if args.task and not measured:
        from harness.registry import task_names

        known = sorted(set(task_names()) | {r.task for r in reference_rows()})
        if args.task not in known:
            raise HarnessError(f"unknown task {args.task!r}; known tasks: {', '.join(known)}")
    rows = measured + reference_rows(args.task)
    wanted = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    views.print_board(rows, args.format, wanted)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness import views
    from harness.rundir import find_run, load_run

    run_dir = find_run(args.out, args.run_id)
    if args.sample is not None:
        views.print_sample(run_dir, args.sample)
        return 0
    views.print_show(*load_run(run_dir), n_samples=args.samples)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness import views
    from harness.compare import compare_runs

    views.print_comparison(compare_runs(args.out, args.run_a, args.run_b, n_boot=args.bootstrap, seed=args.seed))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from harness.rundir import find_run
    from harness.scoring import score_run

    path = score_run(find_run(args.out, args.run_id), args.into, n_boot=args.bootstrap)
    Console().print(f"re-scored: {escape(str(path))}")
    return 0


COMMANDS = {"run": cmd_run, "score": cmd_score, "tasks": cmd_tasks, "solvers": cmd_solvers,
            "leaderboard": cmd_leaderboard, "show": cmd_show, "compare": cmd_compare}
COMMANDS.update(BOARD_COMMANDS)


def cmd_doctor(args: argparse.Namespace) -> int:
    from harness.doctor import FAIL, run_checks

    data_root = args.data or (Path(os.environ["HARNESS_DATA"]) if os.environ.get("HARNESS_DATA") else None)
    checks = run_checks(out_dir=args.out, db_url=_db_url(args), data_root=data_root,
                        base_url=args.base_url or os.environ.get("OPENAI_BASE_URL"),
                        api_key=os.environ.get("OPENAI_API_KEY"), gpu=not args.no_gpu)
    for check in checks:
        print(check.line())
    failed = sum(c.status == FAIL for c in checks)
    print(f"{len(checks)} checks, {failed} failed" + ("" if failed else ": ready"))
    return 1 if failed else 0


COMMANDS["doctor"] = cmd_doctor


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished samples are cached, re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
