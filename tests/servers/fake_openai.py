"""A fake OpenAI-compatible chat server for tests and benchmarks (starlette + uvicorn, all async).

Configurable fixed latency, a failure fraction (half 429 with `Retry-After`, half 500), a hang
mode, scripted answers (a function of the prompt; JSON for schema requests) and counters kept at
the server: requests seen / completed, peak concurrency, completion rate, and the smallest gap
between a 429 and the retry of the same request body (to check that `Retry-After` is honoured).

Run it in a thread of the test process (`FakeOpenAIServer(cfg).start()`) or, for benchmarks, in
its own process (`start(process=True)`) so it does not compete with the client for the GIL.
Standalone: `python tests/servers/fake_openai.py --latency 0.5 --port 0` prints `PORT <n>`.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

AnswerFn = Callable[[str, dict[str, Any]], str]  # (last user text, request body) -> answer text


@dataclass
class ServerConfig:
    latency_s: float = 0.0
    fail_fraction: float = 0.0  # half of the failures are 429 (with Retry-After), half 500
    retry_after_s: float = 1.0
    fail_latency_s: float = 0.0  # how long a failing request takes before its error
    hang: bool = False  # never answer chat requests
    reject_json_schema: bool = False  # answer 400 to response_format=json_schema (no structured outputs)
    answer: str = ""  # "module:function" importable answer function; "" = built-in echo/schema answer
    model: str = "fake-model"
    seed: int = 0
    served_models: tuple[str, ...] = ()  # when set, other model names get vLLM's 404 (one server, one model)
    finish_reason: str = "stop"  # e.g. "length": every answer reports a max_tokens cut-off
    reject_marker: str = ""  # a request whose user text holds this gets a vLLM-style 400 (not about the schema)
    error_style: str = "openai"  # "vllm": error bodies are flat {"object": "error", "message": ...}


def schema_instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A minimal object valid under a (pydantic-style) JSON schema: first enum value, zeros, ''."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return schema_instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_instance(schema[key][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(v, defs) for k, v in props.items()}
    if kind == "array":
        return [schema_instance(schema["items"], defs)] * schema.get("minItems", 0) if "items" in schema else []
    return {"string": "x", "integer": 0, "number": 0.0, "boolean": False, "null": None}.get(kind, "x")


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(p.get("text", "") for p in content or [] if p.get("type") == "text")
    return ""


def default_answer(prompt: str, body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(schema_instance(fmt["json_schema"]["schema"]))
    return f"echo: {prompt[:200]}"


def load_answer(spec: str) -> AnswerFn:
    if not spec:
        return default_answer
    module, _, name = spec.partition(":")
    fn: AnswerFn = getattr(importlib.import_module(module), name)
    return fn


class Counters:
    """Server-side measurements, all updated on the server's event loop."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen = 0
        self.completed = 0
        self.failed_429 = 0
        self.failed_500 = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_seen_t: float | None = None
        self.last_done_t: float | None = None
        self.done_times: list[float] = []
        self.rejected_429_at: dict[str, float] = {}  # body hash -> time of its last 429
        self.min_retry_gap_s: float | None = None
        self.bodies: deque[dict[str, Any]] = deque(maxlen=64)

    def snapshot(self) -> dict[str, Any]:
        span = (self.last_done_t - self.first_seen_t) if self.first_seen_t and self.last_done_t else 0.0
        return {
            "seen": self.seen,
            "completed": self.completed,
            "failed_429": self.failed_429,
            "failed_500": self.failed_500,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "span_s": span,
            "first_seen_t": self.first_seen_t,  # time.monotonic(): comparable across processes on Linux
            "completed_per_s": self.completed / span if span > 0 else 0.0,
            "min_retry_gap_s": self.min_retry_gap_s,
            "server_cpu_s": time.process_time(),  # the whole server process/thread host
            "per_second": _per_second(self.done_times, self.first_seen_t),
        }


def _per_second(times: list[float], start: float | None) -> list[int]:
    if start is None:
        return []
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t - start)] = counts.get(int(t - start), 0) + 1
    return [counts.get(i, 0) for i in range(max(counts) + 1)] if counts else []


def build_app(cfg: ServerConfig, counters: Counters) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    answer = load_answer(cfg.answer)
    rng = random.Random(cfg.seed)
    never = asyncio.Event()

    async def chat(request: Request) -> Response:
        raw = await request.body()
        c = counters
        now = time.monotonic()
        c.seen += 1
        c.in_flight += 1
        c.max_in_flight = max(c.max_in_flight, c.in_flight)
        if c.first_seen_t is None:
            c.first_seen_t = now
        try:
            key = hashlib.sha1(raw).hexdigest()
            if key in c.rejected_429_at:
                gap = now - c.rejected_429_at.pop(key)
                c.min_retry_gap_s = gap if c.min_retry_gap_s is None else min(c.min_retry_gap_s, gap)
            body = json.loads(raw)
            c.bodies.append(body)
            if cfg.hang:
                await never.wait()
            fmt = body.get("response_format") or {}

            def error(message: str, status: int, kind: str = "BadRequestError") -> Response:
                if cfg.error_style == "vllm":
                    flat = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
                    return JSONResponse(flat, status)
                return JSONResponse({"error": {"message": message}}, status)

            if cfg.served_models and body.get("model") not in cfg.served_models:
                return error(f"The model `{body.get('model')}` does not exist.", 404, "NotFoundError")
            if cfg.reject_json_schema and fmt.get("type") == "json_schema":
                return error("response_format json_schema unsupported", 400)
            if cfg.reject_marker and cfg.reject_marker in last_user_text(body):
                return error("At most 1 image(s) may be provided in one request.", 400)
            if cfg.fail_fraction and rng.random() < cfg.fail_fraction:
                if cfg.fail_latency_s:
                    await asyncio.sleep(cfg.fail_latency_s)
                if rng.random() < 0.5:
                    c.failed_429 += 1
                    c.rejected_429_at[key] = time.monotonic()
                    return JSONResponse(
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        429,
                        headers={"retry-after": f"{cfg.retry_after_s:g}"},
                    )
                c.failed_500 += 1
                return JSONResponse({"error": {"message": "internal error"}}, 500)
            if cfg.latency_s:
                await asyncio.sleep(cfg.latency_s)
            prompt = last_user_text(body)
            text = answer(prompt, body)
            result = {
                "id": f"chatcmpl-{c.seen}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or cfg.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": cfg.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(prompt.split()) + len(text.split()),
                },
            }
            c.completed += 1
            c.last_done_t = time.monotonic()
            c.done_times.append(c.last_done_t)
            return JSONResponse(result)
        finally:
            c.in_flight -= 1

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": cfg.model, "object": "model", "owned_by": "fake"}]})

    async def stats(request: Request) -> Response:
        return JSONResponse(counters.snapshot())

    async def bodies(request: Request) -> Response:
        return JSONResponse(list(counters.bodies))

    async def reset(request: Request) -> Response:
        counters.reset()
        return JSONResponse({"ok": True})

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models),
        Route("/stats", stats),
        Route("/bodies", bodies),
        Route("/reset", reset, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _make_server(cfg: ServerConfig, counters: Counters) -> Any:
    import uvicorn

    config = uvicorn.Config(
        build_app(cfg, counters),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=1,  # hung requests must not hold the shutdown
    )
    return uvicorn.Server(config)


def _bind(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it the response body waits on Nagle + delayed ACK (~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


class ServerHandle(abc.ABC):
    """A uvicorn server in a thread of this process or in its own process (printing `PORT n`), with one
    way to start and stop it; FakeOpenAIServer and the faulty server of the reliability suite share it."""

    name = "server"

    def __init__(self, *, process: bool = False, port: int = 0) -> None:
        self.process, self.port = process, port
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve_in_thread(self, server: Any, sock: socket.socket) -> None:
        self.port, self._server = sock.getsockname()[1], server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True,
                                        name=self.name)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within 10 s")
            time.sleep(0.01)

    def _serve_in_process(self, args: list[str]) -> None:
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("PORT "):
            self._proc.kill()
            raise RuntimeError(f"{self.name} process failed to start: {line!r}")
        self.port = int(line.split()[1])

    @abc.abstractmethod
    def start(self) -> ServerHandle:
        """Start serving (in a thread, or in a process when `process`); returns self."""

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeOpenAIServer(ServerHandle):
    """Context manager: `with FakeOpenAIServer(ServerConfig(latency_s=0.5)) as srv: srv.base_url`."""

    name = "fake-openai"

    def __init__(self, config: ServerConfig | None = None, *, process: bool = False) -> None:
        super().__init__(process=process)
        self.config = config or ServerConfig()

    def start(self) -> FakeOpenAIServer:
        if self.process:
            self._serve_in_process([sys.executable, __file__, "--port", "0", "--config",
                                    json.dumps(dataclasses.asdict(self.config))])
        else:
            self._serve_in_thread(_make_server(self.config, Counters()), _bind())
        return self

    def _get(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/stats"))

    def bodies(self) -> list[dict[str, Any]]:
        return list(self._get("/bodies"))

    def reset(self) -> None:
        self._get("/reset", "POST")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default="{}", help="ServerConfig fields as JSON")
    parser.add_argument("--latency", type=float, default=None)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: answer modules
    cfg = ServerConfig(**json.loads(args.config))
    if args.latency is not None:
        cfg.latency_s = args.latency
    sock = _bind(args.port)
    server = _make_server(cfg, Counters())
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    try:  # a faster event loop keeps the server's own CPU per request out of the measurements
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    except ImportError:
        asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
