"""Model backends: one small chat interface; caching and retries wrap any backend from outside."""

from harness.models.base import ChatRequest, ChatResponse, Message, ModelBackend, Part

__all__ = ["ChatRequest", "ChatResponse", "Message", "ModelBackend", "Part"]
