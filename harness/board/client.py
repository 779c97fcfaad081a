"""`harness submit RUN_DIR --to URL`: send a finished run's manifest, samples.jsonl and the sha256 of
each artifact its records reference to a board, which re-scores it. metrics.json is not sent: the
board computes every number itself."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson

from harness.core import HarnessError


def build_payload(run_dir: Path, *, with_files: bool = True) -> bytes:
    """The body of a submission; with `with_files`, the artifact files themselves (base64) too, for
    scorers that read them (protected images)."""
    manifest_path, samples_path = run_dir / "manifest.json", run_dir / "samples.jsonl"
    for p in (manifest_path, samples_path):
        if not p.is_file():
            raise HarnessError(f"{p}: missing; submit a finished run folder (runs/<run_id>)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{manifest_path}: not JSON: {exc}") from exc
    samples = samples_path.read_text()
    artifacts: dict[str, str] = {}
    files: dict[str, str] = {}
    store_root = run_dir.parent / "artifacts"
    for line in samples.splitlines():
        if '"artifacts"' not in line:
            continue
        for ref in (orjson.loads(line).get("artifacts") or {}).values():
            if isinstance(ref, str) and ref not in artifacts:
                path = store_root / ref
                if not path.is_file():
                    artifacts[ref] = ref.replace("/", "").split(".")[0]
                    continue
                content = path.read_bytes()
                artifacts[ref] = hashlib.sha256(content).hexdigest()
                if with_files:
                    files[ref] = base64.b64encode(content).decode()
    return orjson.dumps({"manifest": manifest, "samples": samples, "artifacts": artifacts, "artifact_files": files})


def submit(run_dir: Path, url: str, token: str | None, *, timeout_s: float = 600.0,
           with_files: bool = True) -> dict[str, Any]:
    """POST the run to `<url>/api/submit`; returns the board's answer (accepted / exists), raises
    HarnessError with the board's reason when it refuses."""
    import httpx

    body = build_payload(run_dir, with_files=with_files)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        resp = httpx.post(url.rstrip("/") + "/api/submit", content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise HarnessError(f"cannot reach the board at {url}: {exc}") from exc
    try:
        answer = resp.json()
    except ValueError:
        answer = {"status": "refused", "reason": resp.text[:300]}
    if resp.status_code >= 400:
        raise HarnessError(f"the board refused the run ({resp.status_code}): {answer.get('reason', answer)}")
    return answer
