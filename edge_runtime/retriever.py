"""A retriever head for FAQ: dense entry embeddings fused with BM25, and abstention.

A `retriever` student (recipe `student.head: retriever`, faq tasks) is the student's body
trained contrastively as a query/entry embedder (`distill.train.retriever`). On the device the
body is a GGUF run by llama.cpp (the last token's final hidden state, `engines/retriever.py`);
this module is the numpy rest, the same code at evaluation and on the device:

- cosine similarity of the query to every entry's precomputed embedding (`entries`);
- reciprocal rank fusion (Cormack et al. 2009) of that ranking with BM25's, with the dense
  ranking's weight chosen on the validation split (`dense_weight`; 1 is dense alone, 0 BM25);
- the answer is the fused top entry, or "none" when the calibrated probability that it is
  right (logistic on the top cosine and its margin over the next, fitted on validation with
  the recipe's expected unanswerable rate as the prior) is below `threshold`.

`retriever.npz` holds `ids`, `entries` (entries x hidden, unit rows), `pooling`, the prefixes,
`dense_weight`, `rrf_k`, `calibration` (3 floats) and `threshold`. Training writes the entry
embeddings its fp32 body computes; packing recomputes them with the shipped GGUF.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge_runtime.heads import HeadFile
from edge_runtime.task import NO_ANSWER

RETRIEVER_FILE = "retriever.npz"
POOLING = "last"
QUERY_PREFIX = "query: "
ENTRY_PREFIX = "entry: "
RRF_K = 60  # the constant of Cormack et al.; ranks beyond ~k matter little
TOP_ALTERNATIVES = 3


class RetrieverError(ValueError):
    """A retriever file that cannot be used; the message says what is wrong and what to do."""


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def ranks(scores: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each entry by descending score; entries not `present` get rank inf."""
    order = np.argsort(-scores, kind="stable")
    r = np.empty(len(scores), dtype=np.float64)
    r[order] = np.arange(1, len(scores) + 1)
    if present is not None:
        r[~present] = np.inf
    return r


def fuse(dense: np.ndarray, bm25: np.ndarray, dense_weight: float, k: int = RRF_K) -> np.ndarray:
    """Weighted reciprocal rank fusion; an entry sharing no word with the query gets no BM25 share."""
    return dense_weight / (k + ranks(dense)) + (1.0 - dense_weight) / (k + ranks(bm25, bm25 > 0))


def features(dense: np.ndarray, choice: int) -> np.ndarray:
    """What abstention reads: the chosen entry's cosine and its margin over the best other entry."""
    others = np.delete(dense, choice)
    best_other = float(others.max()) if len(others) else -1.0
    return np.array([float(dense[choice]), float(dense[choice]) - best_other, 1.0])


def sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclass
class RetrieverHead(HeadFile):
    ids: list[str]
    entries: np.ndarray  # (len(ids), hidden), unit rows
    dense_weight: float = 0.5
    rrf_k: int = RRF_K
    calibration: np.ndarray = None  # (3,): logistic weights on `features`; None: never abstain
    threshold: float = 0.5
    pooling: str = POOLING
    query_prefix: str = QUERY_PREFIX
    entry_prefix: str = ENTRY_PREFIX

    FILE = RETRIEVER_FILE
    KIND = "retriever head"
    ERROR = RetrieverError

    def __post_init__(self) -> None:
        self.entries = np.asarray(self.entries, dtype=np.float32)
        if self.calibration is None:
            self.calibration = np.array([0.0, 0.0, 60.0])  # p = 1: no abstention until fitted

    @classmethod
    def _from_npz(cls, z: Any) -> "RetrieverHead":
        return cls(ids=[str(x) for x in z["ids"].tolist()], entries=z["entries"],
                   dense_weight=float(z["dense_weight"]), rrf_k=int(z["rrf_k"]),
                   calibration=np.asarray(z["calibration"], dtype=np.float64), threshold=float(z["threshold"]),
                   pooling=str(z["pooling"]), query_prefix=str(z["query_prefix"]), entry_prefix=str(z["entry_prefix"]))

    def _check(self, what: str) -> None:
        if self.entries.ndim != 2 or self.entries.shape[0] != len(self.ids) or not self.ids:
            raise RetrieverError(f"{what}: entries {self.entries.shape} do not match {len(self.ids)} ids; re-pack the bundle")
        if not (np.isfinite(self.entries).all() and np.isfinite(self.calibration).all() and self.calibration.shape == (3,)):
            raise RetrieverError(f"{what}: non-finite embeddings or calibration; re-train the student")
        if not 0 <= self.dense_weight <= 1 or self.rrf_k < 1:
            raise RetrieverError(f"{what}: dense_weight must be in [0, 1] and rrf_k >= 1; re-train the student")
        if self.pooling != POOLING:
            raise RetrieverError(f"{what}: pooling {self.pooling!r} is not supported (only {POOLING!r})")

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"ids": np.array(self.ids, dtype=np.str_), "entries": self.entries.astype(np.float32),
                "dense_weight": np.float64(self.dense_weight), "rrf_k": np.int64(self.rrf_k),
                "calibration": np.asarray(self.calibration, dtype=np.float64), "threshold": np.float64(self.threshold),
                "pooling": np.str_(self.pooling), "query_prefix": np.str_(self.query_prefix),
                "entry_prefix": np.str_(self.entry_prefix)}

    @property
    def hidden_size(self) -> int:
        return int(self.entries.shape[1])

    def with_entries(self, ids: list[str], entries: np.ndarray) -> "RetrieverHead":
        """The same head over other entry embeddings (the shipped GGUF's, at pack time)."""
        return replace(self, ids=list(ids), entries=unit(entries))

    def entry_text(self, entry) -> str:
        """What an entry's embedding is computed from: its question (training and device alike)."""
        return self.entry_prefix + entry.question

    def query_text(self, query: str) -> str:
        return self.query_prefix + query

    def dense_scores(self, query_embedding: np.ndarray) -> np.ndarray:
        q = unit(query_embedding)
        if q.shape[-1] != self.hidden_size:
            raise RetrieverError(f"the model's hidden size {q.shape[-1]} differs from the entries' {self.hidden_size}: "
                                 f"the retriever file belongs to another model; re-pack the run's own artifacts")
        return self.entries @ q

    def probability(self, dense: np.ndarray, choice: int) -> float:
        """Calibrated probability that entry `choice` answers the query."""
        return float(sigmoid(features(dense, choice) @ self.calibration))

    def answer(self, query_embedding: np.ndarray, bm25: np.ndarray, top: int = TOP_ALTERNATIVES
               ) -> tuple[dict[str, Any], float, list[dict[str, Any]], dict[str, Any]]:
        """(answer, probability that it is right, alternatives, details) for one query.

        `bm25` is the knowledge base's BM25 score per entry, in `ids` order. When the best
        entry's probability is below the threshold the answer is "none" and the confidence is
        the probability that abstaining is right (1 - p)."""
        dense = self.dense_scores(query_embedding)
        fused = fuse(dense, np.asarray(bm25, dtype=np.float64), self.dense_weight, self.rrf_k)
        order = np.argsort(-fused, kind="stable")
        best = int(order[0])
        p = self.probability(dense, best)
        alternatives = [{"faq_id": self.ids[int(i)], "probability": round(self.probability(dense, int(i)), 6)}
                        for i in order[1:1 + top]]
        details = {"best": self.ids[best], "best_probability": round(p, 6), "cosine": round(float(dense[best]), 6)}
        if p < self.threshold:
            alternatives = [{"faq_id": self.ids[best], "probability": round(p, 6)}] + alternatives[:top - 1]
            return {"faq_id": NO_ANSWER}, 1.0 - p, alternatives, {**details, "abstained": True}
        return {"faq_id": self.ids[best]}, p, alternatives, {**details, "abstained": False}


def bm25_scores(kb, query: str, ids: list[str], held_out: bool = False) -> np.ndarray:
    """The knowledge base's BM25 score of each entry in `ids` order."""
    scores = kb.scores(query, held_out=held_out)
    where = {faq_id: i for i, faq_id in enumerate(kb.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise RetrieverError(f"the retriever's entries {missing[:3]} are not in the knowledge base: "
                             f"the head belongs to another knowledge base; re-pack the run's own artifacts")
    return scores[[where[i] for i in ids]]
