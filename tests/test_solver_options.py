"""Typed solver options: typos are refused with the valid options, CLI strings become the declared
types, the canonical config (defaults filled in) is the identity, generation settings reach the
request body, and the prompt digest follows the prompts."""

from __future__ import annotations

import hashlib
import json
import linecache
from pathlib import Path
from typing import Any

import pytest

from harness.cli import build_parser, main
from harness.core import HarnessError, RunContext, Solver, SolverOptions
from harness.registry import get_task, make_solver
from tasks.motor.fixture import write_fixture
from tests.servers.fake_openai import FakeOpenAIServer, ServerConfig


@pytest.fixture(scope="module")
def motor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("motor"), 4)


def _hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _cli_options(*pairs: str) -> dict[str, Any]:
    """-S values exactly as the CLI parses them (ast.literal_eval, else the raw string)."""
    args = build_parser().parse_args(["run", "--task", "sarcasm", *[a for p in pairs for a in ("-S", p)]])
    return dict(args.solver_options)


def test_a_typo_is_refused_through_the_cli_naming_the_valid_options(motor_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAIServer(ServerConfig()) as srv:
        code = main(["run", "--task", "motor", "--solver", "mllm", "--model", "m", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "--out", str(tmp_path), "--no-progress", "-S", "frame=4"])
        assert srv.bodies() == []  # refused before any request
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown option 'frame'" in err and "did you mean 'frames'" in err
    for option in ("frames: int = 8", "temperature: float = 0.0", "max_tokens", "top_p", "seed"):
        assert option in err


def test_bad_values_are_refused_with_the_key_and_value() -> None:
    task = get_task("sarcasm")
    with pytest.raises(HarnessError, match=r"option C=0: .*greater than 0") as info:
        make_solver(task, "tfidf", RunContext(), {"C": 0})
    assert "classifier: 'svm' | 'logreg' = 'svm'" in str(info.value)
    with pytest.raises(HarnessError, match="option features='audio'"):
        make_solver(task, "tfidf", RunContext(), {"features": "audio"})
    with pytest.raises(HarnessError, match="unknown option 'kernel'"):
        make_solver(task, "tfidf", RunContext(), {"kernel": "linear"})
    with pytest.raises(HarnessError, match="option frames=-1"):
        make_solver(get_task("motor"), "mllm", RunContext(model="m", base_url="http://127.0.0.1:9"), {"frames": -1})
    with pytest.raises(HarnessError, match="this solver takes no options"):
        make_solver(task, "majority", RunContext(), {"k": 1})


@pytest.mark.parametrize(("raw", "expected"), [("scale=false", False), ("scale=False", False), ("scale=0", False),
                                               ("scale=true", True), ("scale=True", True), ("scale=1", True)])
def test_cli_strings_become_the_declared_type(raw: str, expected: bool) -> None:
    solver = make_solver(get_task("sarcasm"), "tfidf", RunContext(), _cli_options(raw))
    assert solver.options["scale"] is expected and solver.opts.scale is expected  # type: ignore[attr-defined]


def test_cli_numbers_and_strings_are_coerced() -> None:
    opts = _cli_options("C=3", "features=utterance+context")
    assert opts == {"C": 3, "features": "utterance+context"}  # the CLI reads 3 as an int
    solver = make_solver(get_task("sarcasm"), "tfidf", RunContext(), opts)
    assert solver.options["C"] == 3.0 and isinstance(solver.options["C"], float)
    motor = make_solver(get_task("motor"), "mas-vote", RunContext(model="m", base_url="http://127.0.0.1:9"),
                        _cli_options("n_agents=5", "debate=yes", "temperature=1"))
    assert (motor.options["n_agents"], motor.options["debate"], motor.options["temperature"]) == (5, True, 1.0)


def test_an_explicit_default_is_the_same_identity() -> None:
    task = get_task("sarcasm")
    default = make_solver(task, "tfidf", RunContext(), {})
    explicit = make_solver(task, "tfidf", RunContext(), _cli_options("features=utterance", "C=1", "scale=false"))
    assert explicit.identity() == default.identity() and _hash(explicit.identity()) == _hash(default.identity())
    assert default.identity()["options"] == {"features": "utterance", "classifier": "svm", "C": 1.0, "scale": False}
    other = make_solver(task, "tfidf", RunContext(), {"scale": True})
    assert _hash(other.identity()) != _hash(default.identity())

    ctx = RunContext(model="m", base_url="http://127.0.0.1:9", seed=3)
    mllm = make_solver(task, "mllm", ctx, {})
    written = make_solver(task, "mllm", ctx, _cli_options("frames=8", "context=true", "temperature=0", "seed=3"))
    assert mllm.identity() == written.identity()
    assert mllm.identity()["options"]["seed"] == 3  # filled from --seed
    assert make_solver(task, "mllm", ctx, {"seed": 4}).identity() != mllm.identity()


def test_model_solvers_carry_model_and_endpoint_in_their_identity() -> None:
    task = get_task("sarcasm")
    a = make_solver(task, "mllm", RunContext(model="m", base_url="http://127.0.0.1:9/v1"), {})
    b = make_solver(task, "mllm", RunContext(model="m", base_url="http://127.0.0.2:9/v1"), {})
    assert a.identity()["model"] == "m" and a.identity()["endpoint"] == "http://127.0.0.1:9/v1"
    assert a.identity() != b.identity()
    assert a.identity()["version"] == "3" and isinstance(a.identity()["prompts"], str)


def test_seeded_solvers_take_the_run_seed_unless_given() -> None:
    task = get_task("sarcasm")
    assert make_solver(task, "random", RunContext(seed=7), {}).options == {"seed": 7}
    assert make_solver(task, "random", RunContext(seed=7), {"seed": 2}).options == {"seed": 2}


def test_generation_settings_reach_the_request_and_the_manifest(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig()) as srv:
        code = main(["run", "--task", "motor", "--solver", "mllm", "--model", "m", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "--out", str(tmp_path), "--no-progress", "--bootstrap", "10",
                     "--seed", "5", "-S", "temperature=0.7", "-S", "max_tokens=77", "-S", "top_p=0.9",
                     "-S", "frames=0"])
        bodies = srv.bodies()
    assert code == 0 and len(bodies) == 4
    for body in bodies:
        assert (body["temperature"], body["max_tokens"], body["top_p"], body["seed"]) == (0.7, 77, 0.9, 5)
    manifest = json.loads(next(tmp_path.glob("*/manifest.json")).read_text())
    options = manifest["solver_config"]["options"]
    assert (options["temperature"], options["max_tokens"], options["top_p"], options["seed"]) == (0.7, 77, 0.9, 5)
    assert manifest["solver_config"]["endpoint"] == srv.base_url.rstrip("/")


def test_top_p_is_left_to_the_server_by_default(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig()) as srv:
        assert main(["run", "--task", "motor", "--solver", "mllm", "--model", "m", "--base-url", srv.base_url,
                     "--data", str(motor_dir), "--out", str(tmp_path), "--no-progress", "--bootstrap", "10",
                     "--limit", "1", "-S", "frames=0"]) == 0
        bodies = srv.bodies()
    assert bodies and all("top_p" not in b and b["temperature"] == 0.0 and b["max_tokens"] == 512 for b in bodies)


def test_a_changed_prompt_changes_the_prompt_digest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import agents.motor_mas
    import tasks.sarcasm.mllm_solver as sarcasm_mllm

    ctx = RunContext(model="m", base_url="http://127.0.0.1:9")
    sarcasm, motor = get_task("sarcasm"), get_task("motor")
    before = make_solver(sarcasm, "mllm", ctx, {}).prompt_digest()
    monkeypatch.setattr(sarcasm_mllm, "SYSTEM_PROMPT", sarcasm_mllm.SYSTEM_PROMPT + " Be brief.")
    after = make_solver(sarcasm, "mllm", ctx, {}).prompt_digest()
    assert before != after and make_solver(sarcasm, "tfidf", ctx, {}).prompt_digest() is None

    # An agent prompt written inline in the graph's code: a copy of the module with one word changed.
    mas_before = make_solver(motor, "motor-mas", ctx, {}).prompt_digest()
    assert mas_before != make_solver(motor, "mas-vote", ctx, {}).prompt_digest()
    source = Path(agents.motor_mas.__file__).read_text()
    assert "You are the coordinator" in source
    edited = tmp_path / "motor_mas.py"
    edited.write_text(source.replace("You are the coordinator", "You are the chair"))
    monkeypatch.setattr(agents.motor_mas, "__file__", str(edited))
    linecache.clearcache()
    assert make_solver(motor, "motor-mas", ctx, {}).prompt_digest() != mas_before


def test_harness_solvers_prints_options_with_types_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solvers", "--task", "motor"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("max_revisions: int = 2", "n_agents: int = 3", "debate: bool = False", "frames: int = 8",
                 "independent agents that vote"):
        assert text in out


def test_a_third_party_solver_declares_its_options() -> None:
    from pydantic import Field

    class Opts(SolverOptions):
        k: int = Field(3, description="neighbours")

    class KSolver(Solver):
        name = "k"
        Options = Opts

        async def solve(self, sample: Any) -> Any:
            return self.options["k"]

    assert KSolver(k="4").options == {"k": 4}
    with pytest.raises(HarnessError, match=r"solver 'k': unknown option 'kk' \(did you mean 'k'\?\)"):
        KSolver(kk=4)
    with pytest.raises(Exception, match="frozen"):
        KSolver().opts.k = 5  # type: ignore[misc]
