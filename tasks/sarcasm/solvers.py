"""CPU baselines for MUStARD: majority class, seeded coin flip, and TF-IDF + linear classifier.

The TF-IDF solver mirrors the paper's text-only SVM configurations with features that need no
weights: the utterance (word 1-2-grams + char 2-5-grams), optionally the context as its own
TF-IDF block (the paper's `use_context` appends a separate context vector) and the speaker as a
one-hot block (the paper's `use_author`). Everything is fitted on the fold's train part only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.core import HarnessError, Sample, SeededSolver, Solver, SolverOptions
from harness.registry import register_solver

FEATURE_SETS = ("utterance", "utterance+context", "utterance+speaker", "utterance+context+speaker")
CLASSIFIERS = ("svm", "logreg")
# MUStARD config.py, text-only speaker-dependent rows: svm_c = 1.0 with standard scaling (the
# speaker-independent rows use C = 10 without scaling; pass -S C=10 to follow them).
DEFAULT_C = 1.0


@register_solver("majority", tasks=("sarcasm",), kind="classical")
class MajoritySolver(Solver):
    """Always the most frequent label of the fold's train part; a tie (276/276 in every official
    MUStARD train fold) goes to "not sarcastic", the class the reference code's majority line predicts."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.label = False

    def fit(self, train: Sequence[Sample]) -> None:
        counts = Counter(bool(s.target) for s in train)
        self.label = counts[True] > counts[False]

    async def solve(self, sample: Sample) -> bool:
        return self.label


@register_solver("random", tasks=("sarcasm",), kind="classical")
class RandomSolver(SeededSolver):
    """A fair coin per sample, seeded by --seed and the sample id (so order and concurrency do not matter)."""

    async def solve(self, sample: Sample) -> bool:
        digest = self.sample_digest(sample)
        return digest[0] % 2 == 1


_UTTERANCE, _CONTEXT, _SPEAKER = 0, 1, 2


def _context_text(sample: Sample) -> str:
    return " ".join(sample.inputs.get("context") or [])


@register_solver("tfidf", tasks=("sarcasm",), kind="classical")
class TfidfSolver(Solver):
    """Word + char n-gram TF-IDF with a linear SVM or logistic regression, fitted per fold."""

    batch_size = 256  # one vectorizer pass per batch instead of one per sample

    class Options(SolverOptions):
        features: Literal["utterance", "utterance+context", "utterance+speaker", "utterance+context+speaker"] = Field(
            "utterance", description="TF-IDF blocks: the utterance, plus the context and/or a speaker one-hot")
        classifier: Literal["svm", "logreg"] = Field("svm", description="linear SVM or logistic regression")
        C: float = Field(DEFAULT_C, gt=0, description="inverse regularisation strength")
        scale: bool = Field(False, description="standard-scale the features (without centring) before the classifier")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.use_context = "context" in self.options["features"]
        self.use_speaker = "speaker" in self.options["features"]
        self.model: Any = None

    def _feature_union(self) -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import OneHotEncoder

        def word() -> TfidfVectorizer:
            return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)

        def char() -> TfidfVectorizer:
            return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)

        # Columns of `_table`: a scalar index hands a text column to a vectorizer as 1-D.
        blocks: list[tuple[str, Any, Any]] = [("utterance_words", word(), _UTTERANCE),
                                              ("utterance_chars", char(), _UTTERANCE)]
        if self.use_context:
            blocks += [("context_words", word(), _CONTEXT), ("context_chars", char(), _CONTEXT)]
        if self.use_speaker:
            blocks.append(("speaker", OneHotEncoder(handle_unknown="ignore"), [_SPEAKER]))
        return ColumnTransformer(blocks)

    @staticmethod
    def _table(samples: Sequence[Sample]) -> Any:
        import numpy as np

        rows = [(s.inputs["utterance"], _context_text(s), s.inputs.get("speaker", "")) for s in samples]
        return np.array(rows, dtype=object).reshape(len(rows), 3)

    def fit(self, train: Sequence[Sample]) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        options = self.options
        classifier = (LinearSVC(C=options["C"]) if options["classifier"] == "svm"
                      else LogisticRegression(C=options["C"], max_iter=2000))
        steps = [self._feature_union()]
        if options["scale"]:
            steps.append(StandardScaler(with_mean=False))  # sparse input: scale without centring
        steps.append(classifier)
        self.model = make_pipeline(*steps)
        self.model.fit(self._table(train), [bool(s.target) for s in train])

    def predict(self, samples: Sequence[Sample]) -> list[bool]:
        if self.model is None:
            raise HarnessError("tfidf: solve called before fit (this solver needs a protocol with train data)")
        return [bool(p) for p in self.model.predict(self._table(samples))]

    async def solve(self, sample: Sample) -> bool:
        return self.predict([sample])[0]

    async def solve_batch(self, samples: Sequence[Sample]) -> list[Any]:
        return list(self.predict(samples))
