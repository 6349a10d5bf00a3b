"""FAQ retrieval: BM25 over a small knowledge base, and the candidate text a faq prompt carries.

A faq task never asks the student to recall 125 answers from its weights: the query
retrieves the top-k FAQ entries and the student picks one of them (or "none"). The same
code runs in training, evaluation and on the device, so it is numpy and the standard
library only (Okapi BM25 written out, ~40 lines; no torch, no index server), plus jieba for
Chinese words (edge_runtime/text.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.layout import RunLayout
from edge_runtime.prompt_text import prompt_text
from edge_runtime.text import has_cjk, words

# Common English function words: they match every question and only add noise to BM25.
STOPWORDS = frozenset(
    """a about an and are as at be been but by can could do does doing for from had has have how i if in
    into is it its me my of on or our should so than that the their them then there these this those to
    was we were what when where which who why will with would you your""".split()
) | frozenset(
    # Chinese function words and question frames ("how do I", "what is"): the same noise.
    """的 了 吗 呢 吧 啊 呀 么 我 我的 你 您 他 她 它 我们 是 在 和 与 及 或 就 都 也 还 又 把 被 给 对 从
    要 想 会 能 可以 能否 可否 请问 请 一下 怎么 怎么办 怎样 如何 什么 为什么 哪 哪里 哪些 有 没有 该 这 那 这个 那个""".split()
)


def tokenize(text: str) -> list[str]:
    """Retrieval terms: the words of `edge_runtime.text.words` (jieba words for Chinese, lower-cased
    runs of letters/digits otherwise) without stopwords, with a light plural strip ("accounts" ~
    "account"). A Chinese word of several characters also adds its characters: paraphrases share
    morphemes more often than whole words (挂失 / 丢失, 取款密码 / 密码). On data/zh-faq that took
    recall@1 from 0.490 (words only) to 0.745 and recall@5 from 0.706 to 0.941; character uni- and
    bigrams alone gave 0.745 / 0.902 (benchmarks/zh_faq_retrieval.py)."""
    out = []
    for tok in words(text):
        if tok in STOPWORDS:
            continue
        if has_cjk(tok):
            out.append(tok)
            if len(tok) > 1:
                out.extend(tok)
            continue
        if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
            tok = tok[:-1]
        out.append(tok)
    return out


class BM25:
    """Okapi BM25 (Robertson & Zaragoza 2009) with the usual k1=1.5, b=0.75 and a non-negative idf."""

    def __init__(self, docs: list[list[str]], k1: float = 1.5, b: float = 0.75):
        if not docs:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        for doc in docs:
            for tok in doc:
                self.vocab.setdefault(tok, len(self.vocab))
        self.tf = np.zeros((len(docs), max(1, len(self.vocab))), dtype=np.float32)
        for i, doc in enumerate(docs):
            for tok in doc:
                self.tf[i, self.vocab[tok]] += 1
        self.doc_len = self.tf.sum(axis=1)
        self.avg_len = float(self.doc_len.mean()) or 1.0
        self.idf = self._idf(self.tf)

    @staticmethod
    def _idf(tf: np.ndarray) -> np.ndarray:
        df = (tf > 0).sum(axis=0)
        return np.log1p((tf.shape[0] - df + 0.5) / (df + 0.5)).astype(np.float32)

    def scores(self, query: list[str], remove: tuple[int, list[str]] | None = None) -> np.ndarray:
        """One score per document; 0 for documents sharing no term with the query.

        `remove=(doc, tokens)` scores as if `tokens` had never been part of document `doc`
        (exactly: its term counts, length, the average length and the idf all change), which
        is how a training query held in the index is left out of its own retrieval."""
        cols = [self.vocab[t] for t in query if t in self.vocab]
        if not cols:
            return np.zeros(self.tf.shape[0], dtype=np.float32)
        tf, idf, doc_len, avg_len = self.tf[:, cols], self.idf[cols], self.doc_len, self.avg_len
        if remove is not None and remove[1]:
            doc, tokens = remove
            counts = Counter(tokens)
            tf, doc_len = tf.copy(), doc_len.copy()
            tf[doc] = np.maximum(0.0, tf[doc] - np.array([counts[t] for t in query if t in self.vocab], dtype=np.float32))
            doc_len[doc] -= len(tokens)
            avg_len = float(doc_len.mean()) or 1.0
            idf = self._idf(tf)  # df over the query's columns, with the removed tokens gone
        norm = self.k1 * (1 - self.b + self.b * doc_len / avg_len)
        return (idf * tf * (self.k1 + 1) / (tf + norm[:, None])).sum(axis=1)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answers: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()  # known phrasings of the question (labelled past queries), indexed with it

    @property
    def answer(self) -> str:
        """The answer the runtime returns with the chosen id: the first (accepted) one."""
        return self.answers[0] if self.answers else ""


@dataclass
class KnowledgeBase:
    """FAQ entries with a BM25 index over each entry's question (and, by default, its answers)."""

    entries: list[FaqEntry]
    index_answers: bool = True
    _by_id: dict[str, FaqEntry] = field(init=False, repr=False)
    _bm25: BM25 = field(init=False, repr=False)
    _phrasing_owner: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}
        self._phrasing_owner = {q.strip(): i for i, e in reversed(list(enumerate(self.entries))) for q in e.queries}
        if len(self._by_id) != len(self.entries):
            dup = next(e.id for e in self.entries if sum(x.id == e.id for x in self.entries) > 1)
            raise ValueError(f"knowledge base: FAQ id {dup!r} occurs more than once; ids must be unique")
        # The question counts twice: it is the entry's best summary, answers are long and noisy.
        # Known phrasings (`queries`) are how users actually ask: each counts once.
        self._bm25 = BM25([
            tokenize(e.question) * 2 + (tokenize(" ".join(e.answers)) if self.index_answers else [])
            + tokenize(" ".join(e.queries))
            for e in self.entries
        ])

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, faq_id: str) -> FaqEntry:
        try:
            return self._by_id[faq_id]
        except KeyError:
            raise KeyError(f"no FAQ entry {faq_id!r} in the knowledge base ({len(self)} entries)") from None

    def top_k(self, query: str, k: int = 5, held_out: bool = False) -> list[tuple[str, float]]:
        """The k best entries for `query` as (faq_id, score), best first. Entries sharing no
        word with the query are never returned, so an off-topic query gets an empty list.

        `held_out=True`: if `query` is itself one of an entry's known phrasings, rank as if it
        were not indexed. A training prompt is built from a query the enriched index holds;
        leaving it out gives the condition of a new query, whose own words are never there."""
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        scores = self.scores(query, held_out)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.entries[i].id, float(scores[i])) for i in order if scores[i] > 0]

    def scores(self, query: str, held_out: bool = False) -> np.ndarray:
        """BM25's score of every entry for `query`, in `ids` order (`held_out` as in `top_k`)."""
        tokens = tokenize(query)
        owner = self._phrasing_owner.get(query.strip()) if held_out else None
        return self._bm25.scores(tokens, remove=None if owner is None else (owner, tokens))

    def with_queries(self, phrasings: dict[str, list[str]]) -> "KnowledgeBase":
        """A copy whose entries also carry `phrasings[faq_id]` as known phrasings (new ones
        only, in the order given): labelled past queries teach retrieval how users ask."""
        unknown = sorted(set(phrasings) - set(self._by_id))
        if unknown:
            raise KeyError(f"phrasings for FAQ ids not in the knowledge base: {unknown[:5]}")
        entries = []
        for e in self.entries:
            new = [q for q in dict.fromkeys(phrasings.get(e.id, ())) if q not in e.queries]
            entries.append(replace(e, queries=e.queries + tuple(new)))
        return KnowledgeBase(entries, index_answers=self.index_answers)

    def write(self, path: str | Path) -> Path:
        """Write the entries as JSONL in the format `load_knowledge_base` reads (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for e in self.entries:
                row: dict[str, Any] = {"id": e.id, "question": e.question, "answers": list(e.answers)}
                if e.queries:
                    row["queries"] = list(e.queries)
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
        return path


def load_knowledge_base(path: str | Path) -> KnowledgeBase:
    """Read a JSONL of {id, question, answers, queries}; cached per file version, so a task
    re-reads it only when it changes. `answers` and `queries` (known phrasings of the question,
    e.g. past user queries a teacher labelled) are optional."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"knowledge base not found: {p}; task.knowledge_base must name a JSONL of "
            f'{{"id", "question", "answers"}} rows (relative to the recipe or bundle)'
        )
    st = p.stat()
    return _load_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> KnowledgeBase:
    with open(path, encoding="utf-8") as fh:
        return parse_knowledge_base(fh.read(), path)


def parse_knowledge_base(text: str, name: str = "knowledge base") -> KnowledgeBase:
    """A knowledge base from JSONL text already read (a bundle's, from its verified bytes);
    errors name `name` and the line."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}:{n}: not valid JSON ({exc.msg}); each line must be one FAQ object") from None
        if not isinstance(row, dict) or "id" not in row or "question" not in row:
            raise ValueError(f'{name}:{n}: a FAQ entry needs "id" and "question" (and optionally "answers")')
        answers, queries = row.get("answers") or [], row.get("queries") or []
        answers = [answers] if isinstance(answers, str) else answers
        queries = [queries] if isinstance(queries, str) else queries
        entries.append(FaqEntry(str(row["id"]), str(row["question"]), tuple(str(a) for a in answers),
                                tuple(str(q) for q in queries)))
    if not entries:
        raise ValueError(f"{name}: the knowledge base is empty")
    return KnowledgeBase(entries)


def render_candidates(kb: KnowledgeBase, hits: list[tuple[str, float]], language: str = "en") -> str:
    """The candidate block appended to a faq prompt: one `[id] question` line per hit, under a
    header in the task's prompt language.

    Scores are left out on purpose: the student reads the questions, not BM25's opinion.
    """
    text = prompt_text(language)
    if not hits:
        return f"{text['candidates_header']}\n{text['no_candidates']}"
    lines = [f"[{faq_id}] {kb.get(faq_id).question}" for faq_id, _ in hits]
    return text["candidates_header"] + "\n" + "\n".join(lines)


def candidates_for(kb: KnowledgeBase, query: str, k: int = 5, language: str = "en") -> str:
    """Retrieve and render in one call: what `TaskSpec.context_for` returns for a faq task."""
    return render_candidates(kb, kb.top_k(query, k), language)


def export_knowledge_base(task, dest_dir: str | Path, name: str = "knowledge_base.jsonl"):
    """Copy a faq task's knowledge base into `dest_dir` (a bundle) and return a copy of the
    task that names it relatively, so `TaskSpec.from_file(dest_dir / "task.json")` finds it
    wherever the bundle is moved. Tasks without a knowledge base are returned unchanged."""
    if not getattr(task, "knowledge_base", None):
        return task
    import shutil

    dest = Path(dest_dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(task.knowledge_base, dest)
    return task.model_copy(update={"knowledge_base": name})


def run_knowledge_base(run_dir: str | Path) -> Path | None:
    """The enriched knowledge base a `distill run` curate stage wrote (`curate.index_queries`),
    or None when it wrote none. Its record names it relative to the run directory."""
    record = RunLayout(run_dir).record("curate")
    try:
        rel = json.loads(record.read_text(encoding="utf-8"))["outputs"].get("knowledge_base")
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None
    if not rel:
        return None
    path = Path(run_dir) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{record} names {path}, which is missing; re-run the curate stage: "
                                f"distill run RECIPE --from curate")
    return path


def task_for_run(task, run_dir: str | Path):
    """`task` as the stages after curate serve it: a faq task uses the run's enriched knowledge
    base when its curate stage wrote one (same ids, more phrasings), else it is returned as is."""
    kb = run_knowledge_base(run_dir) if getattr(task, "knowledge_base", None) else None
    return task if kb is None else task.model_copy(update={"knowledge_base": str(kb.resolve())})
