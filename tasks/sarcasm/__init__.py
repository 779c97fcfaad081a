"""The `sarcasm` task (MUStARD): data loading, protocols, metrics and CPU solvers."""

from tasks.sarcasm import solvers  # noqa: F401  (importing registers majority, random, tfidf)
from tasks.sarcasm.task import SarcasmTask

__all__ = ["SarcasmTask"]
from tasks.sarcasm import mllm_solver  # noqa: F401
