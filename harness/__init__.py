"""harness: one evaluation harness for human-centric multimodal AI.

The data model (`harness.core`) is imported first: it re-exports the solver base classes of
`harness.solver`, which imports it back, and this order resolves that cycle whichever module a caller
names first.
"""

import harness.core  # noqa: F401
