"""A fault-injecting OpenAI-compatible chat server for the reliability suite (starlette + uvicorn).

One `mode` at a time, switchable while it runs (`POST /mode {"mode": ..., "fail_times": n}`):
- `ok`: answers ``{"sarcastic": true}`` (or `answer`, a fixed content) with finish_reason "stop".
- `5xx`, `429`: the first `fail_times` attempts of each distinct request body fail (500, or 429 with
  `Retry-After: retry_after_s`), later ones succeed.
- `hang`: never answers; `stalled`: sends the headers and half a JSON body, then nothing.
- `invalid_json`: HTTP 200 whose body is not JSON; `empty_choices`: ``{"choices": []}``.
- `truncated`: content ``{"sarcastic": fal`` with finish_reason "length".
- `null_content`: content null; `empty_content`: content ""; `number_content`: content 12345.
- `bad_value`: ``{"sarcastic": "perhaps"}``; `null_value`: ``{"sarcastic": null}``.

The server counts requests per mode (`GET /stats`). For "dies mid-run and returns", run it as a
process (`FaultyServer(process=True, die_after=n)`: it exits on its n-th request) and `start()` it again
on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

try:  # imported as tests' `servers.faulty_openai`, or run as a script from tests/servers/
    from servers.fake_openai import ServerHandle
except ImportError:
    from fake_openai import ServerHandle

MODES = ("ok", "5xx", "429", "hang", "stalled", "invalid_json", "empty_choices", "truncated", "null_content",
         "empty_content", "number_content", "bad_value", "null_value")
CONTENT = {
    "ok": '{"sarcastic": true}',
    "truncated": '{"sarcastic": fal',
    "null_content": None,
    "empty_content": "",
    "number_content": 12345,
    "bad_value": '{"sarcastic": "perhaps"}',
    "null_value": '{"sarcastic": null}',
}


@dataclass
class State:
    mode: str = "ok"
    fail_times: int = 2
    retry_after_s: float = 0.2
    answer: str | None = None  # content of `ok` answers (default {"sarcastic": true})
    attempts: dict[str, int] = field(default_factory=dict)  # body hash -> attempts seen
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    last_429_at: dict[str, float] = field(default_factory=dict)
    min_retry_gap_s: float | None = None
    die_after: int = 0  # process mode: the server exits (like kill -9) on receiving this request number


def _completion(content: Any, finish_reason: str, n: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": "faulty",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def build_app(state: State) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    never = asyncio.Event()

    def count(status: str) -> None:
        state.by_status[status] = state.by_status.get(status, 0) + 1

    async def chat(request: Request) -> Response:
        raw = await request.body()
        state.requests += 1
        if state.die_after and state.requests == state.die_after:
            os._exit(9)  # dies mid-request: the client sees its connection drop
        key = hashlib.sha1(raw).hexdigest()
        attempt = state.attempts.get(key, 0)
        state.attempts[key] = attempt + 1
        mode = state.mode
        if mode == "hang":
            count("hang")
            await never.wait()
        if mode == "stalled":
            count("stalled")

            async def half_body() -> Any:
                yield b'{"id": "chatcmpl-stalled", "choices": [{"index": 0, "message": {"content": "{\\"sar'
                await never.wait()

            return StreamingResponse(half_body(), media_type="application/json")
        if mode in ("5xx", "429") and attempt < state.fail_times:
            if mode == "429":
                count("429")
                state.last_429_at[key] = time.monotonic()
                return JSONResponse({"error": {"message": "rate limited"}}, 429,
                                    headers={"retry-after": f"{state.retry_after_s:g}"})
            count("500")
            return JSONResponse({"error": {"message": "internal error [/] <b>"}}, 500)
        if key in state.last_429_at:
            gap = time.monotonic() - state.last_429_at.pop(key)
            state.min_retry_gap_s = gap if state.min_retry_gap_s is None else min(state.min_retry_gap_s, gap)
        if mode == "invalid_json":
            count("invalid_json")
            return Response(b'{"choices": [ this is not json', 200, media_type="application/json")
        if mode == "empty_choices":
            count("empty_choices")
            return JSONResponse({"id": "x", "choices": []})
        count("200")
        if mode in CONTENT and mode != "ok":
            content, finish = CONTENT[mode], "length" if mode == "truncated" else "stop"
        else:
            content, finish = state.answer if state.answer is not None else CONTENT["ok"], "stop"
        return JSONResponse(_completion(content, finish, state.requests))

    async def set_mode(request: Request) -> Response:
        body = await request.json()
        if body.get("mode") not in MODES:
            return JSONResponse({"error": f"unknown mode {body.get('mode')!r}"}, 400)
        state.mode = body["mode"]
        state.fail_times = int(body.get("fail_times", state.fail_times))
        state.answer = body.get("answer", state.answer)
        state.attempts.clear()
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> Response:
        return JSONResponse({"mode": state.mode, "requests": state.requests, "by_status": state.by_status,
                             "min_retry_gap_s": state.min_retry_gap_s})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "faulty", "object": "model"}]})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models),
        Route("/mode", set_mode, methods=["POST"]),
        Route("/stats", stats),
    ])


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    return sock


def _server(state: State) -> Any:
    import uvicorn

    config = uvicorn.Config(build_app(state), log_level="error", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


class FaultyServer(ServerHandle):
    """`with FaultyServer(mode="5xx") as srv: srv.base_url`; `srv.set_mode("hang")`; in a process,
    `srv.kill()` then `srv.start()` brings it back on the same port."""

    name = "faulty server"

    def __init__(self, mode: str = "ok", *, fail_times: int = 2, retry_after_s: float = 0.2,
                 process: bool = False, port: int = 0, die_after: int = 0, answer: str | None = None) -> None:
        super().__init__(process=process, port=port)
        self.state = State(mode=mode, fail_times=fail_times, retry_after_s=retry_after_s, die_after=die_after,
                           answer=answer)

    def start(self) -> FaultyServer:
        if self.process:
            st = self.state
            self._serve_in_process([sys.executable, __file__, "--port", str(self.port), "--mode", st.mode,
                                    "--fail-times", str(st.fail_times), "--retry-after", str(st.retry_after_s),
                                    "--die-after", str(st.die_after), *(["--answer", st.answer] if st.answer else [])])
        else:
            self._serve_in_thread(_server(self.state), _bind(self.port))
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server process (process mode): connections drop, the port refuses."""
        assert self._proc is not None, "kill() needs process=True"
        self._proc.kill()
        self._proc.wait(timeout=5)
        self._proc = None

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def set_mode(self, mode: str, **kw: Any) -> None:
        if self.process:
            self._call("/mode", {"mode": mode, **kw})
        else:
            assert mode in MODES
            self.state.mode = mode
            self.state.fail_times = int(kw.get("fail_times", self.state.fail_times))
            self.state.answer = kw.get("answer", self.state.answer)
            self.state.attempts.clear()

    def stats(self) -> dict[str, Any]:
        return dict(self._call("/stats"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--fail-times", type=int, default=2)
    parser.add_argument("--retry-after", type=float, default=0.2)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--answer", default=None)
    args = parser.parse_args()
    state = State(mode=args.mode, fail_times=args.fail_times, retry_after_s=args.retry_after,
                  die_after=args.die_after, answer=args.answer)
    sock = _bind(args.port)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    asyncio.run(_server(state).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
