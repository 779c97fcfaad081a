"""The board in a real browser: Debian's headless Chromium driven by Playwright for Python (the
system browser's executable; Playwright downloads nothing). Real `harness run` runs are submitted with
`harness submit` to a live uvicorn server; the test loads /task/sarcasm, sorts by a column, filters a
protocol, opens a run and checks that its plot image loaded. With HARNESS_UPDATE_DOCS=1 it saves the
page as docs/board.png for the README (a plain test run leaves the tracked file alone)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main as harness_main
from harness.runner import RunConfig, RunSettings, run
from tests.board_helpers import TOKENS, create_app, settings
from tests.test_board_plots import fdeid_rows

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser() -> None:
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not shutil.which(CHROMIUM):
        missing = f"{CHROMIUM} not found (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing + "; CI installs it in .ci/run")
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    _need_browser()
    tmp = tmp_path_factory.mktemp("board")
    runs = tmp / "runs"
    out = []
    for solver, protocol in (("tfidf", "speaker-dependent"), ("majority", "speaker-dependent"),
                             ("random", "speaker-dependent"), ("tfidf", "speaker-independent")):
        cfg = RunConfig(task="sarcasm", protocol=protocol, solver=solver, n_boot=100)
        out.append(run(cfg, RunSettings(out_dir=runs, db_url=None, show_progress=False)).run_dir)
    port = _free_port()
    app = create_app(settings(f"sqlite:///{tmp / 'board.sqlite'}"))
    fdeid_rows(app.state.store)  # local fdeid rows: the Pareto plot's points
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    for run_dir in out:  # the README's command
        assert harness_main(["submit", str(run_dir), "--to", url, "--token", TOKENS["alice"]]) == 0
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(board: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 900})  # type: ignore[attr-defined]
    yield ctx.new_page()
    ctx.close()


def _column(page: object, table: str, col: int) -> list[float]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        f"{table} tbody tr", f"rows => rows.map(r => parseFloat(r.cells[{col}].getAttribute('data-value')))")


def test_task_page_sort_filter_open_run_and_plot(board: str, page: object, tmp_path: Path) -> None:
    page.goto(f"{board}/task/sarcasm")  # type: ignore[attr-defined]
    table = 'table.board[data-protocol="speaker-dependent"]'
    assert page.locator(f"{table} tbody tr").count() == 3  # type: ignore[attr-defined]
    assert page.locator("section.references tbody tr").count() >= 3  # the papers' rows, apart
    shot = tmp_path / "board.png"
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
    if os.environ.get("HARNESS_UPDATE_DOCS") == "1":  # only on request: a test run leaves tracked files alone
        shutil.copyfile(shot, REPO / "docs" / "board.png")

    # sort by weighted_f1 (4th column): ascending, then descending
    header = page.locator(f"{table} thead th").nth(3)  # type: ignore[attr-defined]
    assert "weighted_f1" in header.inner_text()
    header.click()
    values = _column(page, table, 3)
    assert values == sorted(values) and len(set(values)) == 3
    header.click()
    assert _column(page, table, 3) == sorted(values, reverse=True)

    # filter a protocol: only the speaker-independent table stays visible
    page.select_option("#protocol-filter", "speaker-independent")  # type: ignore[attr-defined]
    assert not page.locator('section.group[data-protocol="speaker-dependent"]').is_visible()  # type: ignore
    assert page.locator('section.group[data-protocol="speaker-independent"]').is_visible()  # type: ignore
    page.select_option("#protocol-filter", "")  # type: ignore[attr-defined]

    # open the leading run; its confusion-matrix plot loads
    link = page.locator(f"{table} tbody tr").first.locator("a.run-link")  # type: ignore[attr-defined]
    run_id = link.inner_text()
    link.click()
    page.wait_for_url(f"**/run/{run_id}")  # type: ignore[attr-defined]
    assert run_id in page.locator("h1").inner_text()  # type: ignore[attr-defined]
    img = page.locator(".plots img").first  # type: ignore[attr-defined]
    img.wait_for()
    assert page.evaluate("img => img.complete && img.naturalWidth > 100", img.element_handle())  # type: ignore


def _image_loaded(page: object, selector: str) -> bool:
    img = page.locator(selector).first  # type: ignore[attr-defined]
    img.scroll_into_view_if_needed()
    page.wait_for_function(  # type: ignore[attr-defined]
        f"() => {{ const i = document.querySelector({selector!r}); return i && i.complete && i.naturalWidth > 0; }}")
    return page.evaluate("img => img.naturalWidth > 100", img.element_handle())  # type: ignore[attr-defined]


def test_pareto_plot_loads_on_the_task_and_run_pages(board: str, page: object) -> None:
    page.goto(f"{board}/task/fdeid?protocol=folders")  # type: ignore[attr-defined]
    assert _image_loaded(page, "figure.pareto img")
    page.goto(f"{board}/run/f-bad")  # type: ignore[attr-defined]
    assert _image_loaded(page, '.plots img[src$="pareto.png"]')


def test_pages_read_without_javascript(board: str, browser: object) -> None:
    ctx = browser.new_context(java_script_enabled=False)  # type: ignore[attr-defined]
    pg = ctx.new_page()
    pg.goto(f"{board}/task/sarcasm?protocol=speaker-independent")  # the protocol filter as a plain link
    assert pg.locator("section.group").count() == 1
    assert "tfidf" in pg.locator("section.group").inner_text()
    ctx.close()
