"""Scripted answer functions for the fake server (`ServerConfig(answer="servers.answers:NAME")`)."""

from __future__ import annotations

from typing import Any


def json_in_prose(prompt: str, body: dict[str, Any]) -> str:
    return 'Sure. Here is my answer:\n```json\n{"label": "no"}\n```\nHope that helps.'


def yes_if_sarcastic(prompt: str, body: dict[str, Any]) -> str:
    """'yes' when the prompt mentions sarcasm, else 'no' (a deterministic 'model')."""
    return "yes" if "sarcas" in prompt.lower() else "no"


def verdict_by_model(prompt: str, body: dict[str, Any]) -> str:
    """A judge 'model' per name: judge-a always says success, judge-b only for cats, judge-c rambles."""
    model = body.get("model", "")
    if model == "judge-a":
        return '{"verdict": "success", "reason": "looks edited"}'
    if model == "judge-b":
        verdict = "success" if "cat" in prompt else "failure"
        return f'Verdict follows. {{"verdict": "{verdict}", "reason": "checked"}}'
    return "I am not sure what you want."
