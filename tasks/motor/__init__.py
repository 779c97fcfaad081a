"""MOTOR-Bench (arXiv 2605.09703): behavior, cognition and emotion of students in group work.

`tasks.motor.data` documents the manifest + label-vocabulary layout; importing this package
registers the solvers (`majority`, `random`, `stratified`, `mllm`, `motor-mas`, `mas-vote`).
"""

from tasks.motor import baselines, llm_solvers  # noqa: F401  (registers solvers)
from tasks.motor.task import MotorTask

__all__ = ["MotorTask"]
