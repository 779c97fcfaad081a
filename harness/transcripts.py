"""Every model call of a run, one JSON line each, plus per-sample and per-run accounting.

Why: multi-agent solvers and judge panels cost several calls per sample, and an evaluation number is only
as good as the answers behind it. `RecordingBackend` (the outermost wrapper `make_backend` puts around
every backend) writes one line per call to `runs/<id>/transcripts.jsonl` through the run's `TranscriptLog`:
the sample it belongs to (`harness.core.current_sample`), who asked (`ChatRequest.role`: an agent name,
`judge/<model>`), the messages with media replaced by a digest (videos: path digest, frame count and
timestamps), the sampling parameters, the raw answer, finish reason, tokens, latency, and whether it
came from the cache, needed the schema-in-prompt fallback or failed. Calls are also counted per sample
(`pop_usage`, merged into the sample's info as `model_calls`) and per run (`summarise`, metrics.json's
`model_calls`): calls and tokens by role, and the failure taxonomy `truncated` (finish_reason "length"),
`unparseable` (a schema was asked for and the answer held no JSON object), `schema_fallback`,
`judge_error` and `request_error` (failed calls of judges and of everyone else).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.core import current_sample
from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend, Part

FLUSH_LINES = 256  # lines buffered before a write
FLUSH_SECONDS = 2.0  # ... or this long since the last write


class TranscriptLog:
    """Append-only JSONL of model calls. `write` may be called from any thread or the event loop: it
    appends to a buffer under a lock; the buffer goes to disk every `FLUSH_LINES` lines or `FLUSH_SECONDS`,
    and on `flush`/`close`. Writes after `close` are dropped (a straggling call of a cancelled sample)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._closed = False
        self.n_written = 0

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            if self._closed:
                return
            self._buffer.append(line)
            if len(self._buffer) >= FLUSH_LINES or time.monotonic() - self._last_flush > FLUSH_SECONDS:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._buffer:
            self._file.write("\n".join(self._buffer) + "\n")
            self._file.flush()
            self.n_written += len(self._buffer)
            self._buffer = []
        self._last_flush = time.monotonic()

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._flush_locked()
            self._file.close()
            self._closed = True

    def __enter__(self) -> TranscriptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_transcripts(path: Path, sample: str | None = None) -> list[dict[str, Any]]:
    """The records of a transcripts.jsonl (of one sample when given), in call order. Torn last lines
    (a killed run) are skipped."""
    out: list[dict[str, Any]] = []
    if not Path(path).is_file():
        return out
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if sample is None or record.get("sample") == sample:
                out.append(record)
    return out


# -- accounting ----------------------------------------------------------------------------------------

_usage_lock = threading.Lock()
_usage: dict[str, dict[str, dict[str, int]]] = {}  # sample id -> role -> counts


def _add_usage(sample: str, role: str, record: Mapping[str, Any]) -> None:
    with _usage_lock:
        counts = _usage.setdefault(sample, {}).setdefault(role, {"calls": 0, "prompt_tokens": 0,
                                                                 "completion_tokens": 0})
        counts["calls"] += 1
        counts["prompt_tokens"] += int(record.get("prompt_tokens") or 0)
        counts["completion_tokens"] += int(record.get("completion_tokens") or 0)
        for flag in FLAGS:
            if record.get(flag):
                counts[flag] = counts.get(flag, 0) + 1


def pop_usage(sample: str) -> dict[str, dict[str, int]]:
    """Calls and tokens by role of one sample so far (and forget them): {role: {calls, prompt_tokens,
    completion_tokens, [truncated, unparseable, schema_fallback, error, cached]}}."""
    with _usage_lock:
        return _usage.pop(sample, {})


def merge_usage(info: dict[str, Any], sample: str) -> dict[str, Any]:
    """`info` with the sample's calls so far added under `model_calls` (role-wise sums)."""
    usage = pop_usage(sample)
    if not usage:
        return info
    merged = {role: dict(counts) for role, counts in (info.get("model_calls") or {}).items()}
    for role, counts in usage.items():
        target = merged.setdefault(role, {})
        for key, value in counts.items():
            target[key] = target.get(key, 0) + value
    info["model_calls"] = merged
    return info


def with_usage(output: Any, sample: str) -> Any:
    """A solver's output with the sample's model calls so far in its info (for outputs that travel
    between processes, e.g. from a Ray actor, where the driver cannot see the calls)."""
    from harness.core import SolverOutput

    if not isinstance(output, SolverOutput):
        usage = pop_usage(sample)
        return SolverOutput(output, {"model_calls": usage}) if usage else output
    info = merge_usage(dict(output.info), sample)
    return SolverOutput(output.prediction, info, output.artifacts)


FLAGS = ("truncated", "unparseable", "schema_fallback", "error", "cached")


def role_group(role: str) -> str:
    """Accounting group of a role: `judge/<model>` counts under its own name and under judge errors."""
    return role or "solver"


def _calls_of(records: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    """Transcript records as they are; run `Record`s as one pseudo-call per role of their `model_calls`
    counts (calls, tokens and flags are sums there)."""
    for r in records:
        if isinstance(r, Mapping):
            yield r
            continue
        for role, counts in ((getattr(r, "info", None) or {}).get("model_calls") or {}).items():
            yield {"role": role, "_n": counts.get("calls", 0), **counts}


def summarise(records: Iterable[Any]) -> dict[str, Any]:
    """Run-level counts of model calls: calls, cached calls, tokens, by role and in total, and the failure
    taxonomy (`truncated`, `unparseable`, `schema_fallback`, `judge_error`, `request_error`). `records` are
    transcript records (dicts, one per call) or the run's `Record`s (their `info["model_calls"]`, which
    also count the calls behind predictions taken from the result cache). Judges that failed every one of
    their calls are listed under `judges_failed_every_call`. Empty ({}) when no model was called."""
    total = {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    taxonomy = {"truncated": 0, "unparseable": 0, "schema_fallback": 0, "judge_error": 0, "request_error": 0}
    by_role: dict[str, dict[str, int]] = {}
    judge_calls: dict[str, list[int]] = {}  # role -> [calls, errors]
    for r in _calls_of(records):
        n = int(r.get("_n", 1))  # calls this entry stands for; its flags are counts then, else booleans
        role = role_group(str(r.get("role") or ""))
        row = by_role.setdefault(role, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "errors": 0})
        errors = int(r.get("error") or 0) if "_n" in r else int(bool(r.get("error")))
        row["calls"] += n
        row["prompt_tokens"] += int(r.get("prompt_tokens") or 0)
        row["completion_tokens"] += int(r.get("completion_tokens") or 0)
        row["errors"] += errors
        total["calls"] += n
        total["cached_calls"] += int(r.get("cached") or 0)
        total["prompt_tokens"] += int(r.get("prompt_tokens") or 0)
        total["completion_tokens"] += int(r.get("completion_tokens") or 0)
        for flag in ("truncated", "unparseable", "schema_fallback"):
            taxonomy[flag] += int(r.get(flag) or 0)
        is_judge = role.startswith("judge")
        taxonomy["judge_error" if is_judge else "request_error"] += errors
        if is_judge:
            seen = judge_calls.setdefault(role, [0, 0])
            seen[0] += n
            seen[1] += errors
    if not total["calls"]:
        return {}
    return {
        **total,
        **taxonomy,
        "by_role": dict(sorted(by_role.items())),
        "judges_failed_every_call": sorted(role for role, (n, e) in judge_calls.items() if n and n == e),
    }


# -- the recording wrapper -----------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def part_record(part: Part, request: ChatRequest) -> dict[str, Any]:
    """A message part for the transcript: text as is, media as digests (never the bytes)."""
    if part.type == "text":
        return {"type": "text", "text": part.text or ""}
    from harness.models.wrappers import file_digest

    out: dict[str, Any] = {"type": part.type}
    if part.data is not None:
        out.update(digest=_digest(part.data), bytes=len(part.data))
    elif part.path:
        out.update(path=part.path, digest="sha256:" + file_digest(part.path)[:16])
    if part.mime:
        out["mime"] = part.mime
    if part.type == "video":
        out["as"] = request.video_input
        if part.path:
            from harness import media

            try:
                times = media.frame_times(Path(part.path), part.num_frames or 8)
                out.update(frames=len(times), timestamps_s=[round(t, 3) for t in times])
            except Exception as exc:  # a broken video shows in the call's error; the record stays
                out.update(frames=part.num_frames, timestamps_error=str(exc))
    return out


def message_records(messages: Iterable[Message], request: ChatRequest) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": [part_record(p, request) for p in m.content]} for m in messages]


def request_params(request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens,
                              "seed": request.seed}
    top_p = getattr(request, "top_p", None)
    if top_p is not None:
        params["top_p"] = top_p
    if request.json_schema is not None:
        blob = json.dumps(request.json_schema, sort_keys=True).encode()
        params["json_schema"] = {"title": request.json_schema.get("title"), "digest": _digest(blob)}
    if request.extra:
        params["extra"] = request.extra
    return params


class RecordingBackend(ModelBackend):
    """Outermost wrapper: counts every call for the sample being solved or scored and, when the run keeps
    a `TranscriptLog`, writes the call to it (cache hits too, marked `cached`)."""

    def __init__(self, inner: ModelBackend, log: TranscriptLog | None = None) -> None:
        self.inner = inner
        self.model = inner.model
        self.endpoint = inner.endpoint
        self.log = log

    async def chat(self, request: ChatRequest) -> ChatResponse:
        start = time.perf_counter()
        error: BaseException | None = None
        response: ChatResponse | None = None
        try:
            response = await self.inner.chat(request)
            return response
        except BackendError as exc:
            error = exc
            raise
        finally:
            if response is not None or error is not None:
                self._record(request, response, error, time.perf_counter() - start)

    def _record(self, request: ChatRequest, response: ChatResponse | None, error: BaseException | None,
                wall_s: float) -> None:
        sample = current_sample.get()
        role = getattr(request, "role", "") or "solver"
        raw = response.raw if response is not None else {}
        record: dict[str, Any] = {
            "sample": sample, "role": role, "model": request.model or self.model, "endpoint": self.endpoint,
            "t": round(time.time(), 3),
        }
        if response is not None:
            record.update(
                finish_reason=raw.get("finish_reason"),
                prompt_tokens=response.prompt_tokens,
                completion_tokens=response.completion_tokens,
                latency_s=round(response.latency_s, 4),
                cached=response.cached,
                truncated=raw.get("finish_reason") == "length",
                unparseable=request.json_schema is not None and response.parsed is None,
                schema_fallback=bool(raw.get("schema_fallback")),
            )
            if raw.get("endpoint"):
                record["endpoint"] = raw["endpoint"]
        else:
            record.update(error=str(error), status=getattr(error, "status", None), latency_s=round(wall_s, 4))
        if sample is not None:
            _add_usage(sample, role, record)
        if self.log is not None:
            record["messages"] = message_records(request.messages, request)
            record["params"] = request_params(request)
            if response is not None:
                record["response"] = response.text
                if raw.get("schema_fallback_reason"):
                    record["schema_fallback_reason"] = raw["schema_fallback_reason"]
            self.log.write(record)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # hits/misses of the cache below, etc.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
