"""Keywords for failure patterns, and the rule that decides whether a teacher's name is usable.

Keywords are class-based TF-IDF (c-TF-IDF, as BERTopic computes it) over each cluster's
analyses: all of a cluster's texts form one document, a term weighs its share of that document
times log(1 + A / f_t), where A is the average number of words per cluster and f_t the term's
count over all clusters. Words every cluster uses ("model", "answer") so rank low.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..records import Pattern

if TYPE_CHECKING:
    import numpy as np

# Words of letters only, three or more: digits, ids and punctuation are never keywords.
TOKEN = r"(?u)\b[^\W\d_]{3,}\b"
NAME_WORDS = 3  # keywords in a replacement name; all of them are shown beside it anyway
_LETTERS = re.compile(r"[^\W\d_]+")


def group_texts(texts: Sequence[str], labels: Sequence[int]) -> dict[int, list[str]]:
    """cluster -> its texts, clusters in ascending order (`labels` is one per text)."""
    groups: dict[int, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        groups.setdefault(label, []).append(text)
    return dict(sorted(groups.items()))


def cluster_keywords(groups: Mapping[int, Sequence[str]], top_n: int = 5,
                     allowed: Callable[[str], bool] | None = None) -> dict[int, list[str]]:
    """cluster -> its `top_n` words by c-TF-IDF, best first, ties alphabetical; words `allowed`
    rejects (the leakage guard's say) are skipped. A cluster without words gets []."""
    clusters = list(groups)
    counted = _counts([" ".join(groups[c]) for c in clusters])
    if counted is None:
        return {c: [] for c in clusters}
    counts, vocab = counted
    weights = c_tf_idf(counts)
    return {c: _top(weights[i], counts[i], vocab, top_n, allowed) for i, c in enumerate(clusters)}


def _counts(docs: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Term counts per document (one per cluster), or None when there is no vocabulary."""
    import numpy as np  # lazily, like every heavy library: `pada --help` stays instant
    from sklearn.feature_extraction.text import CountVectorizer

    if not docs:
        return None
    vectorizer = CountVectorizer(lowercase=True, stop_words="english", token_pattern=TOKEN)
    try:
        matrix = vectorizer.fit_transform(docs)
    except ValueError:  # nothing but stop words, digits or punctuation: scikit-learn refuses
        return None
    return np.asarray(matrix.toarray(), dtype=float), [str(t) for t in vectorizer.get_feature_names_out()]


def c_tf_idf(counts: np.ndarray) -> np.ndarray:
    """BERTopic's class-based TF-IDF of a (clusters x terms) count matrix."""
    import numpy as np

    words = counts.sum(axis=1, keepdims=True)
    tf = np.divide(counts, words, out=np.zeros_like(counts), where=words > 0)
    average = counts.sum() / max(len(counts), 1)
    totals = counts.sum(axis=0)
    idf = np.log1p(np.divide(average, totals, out=np.zeros_like(totals), where=totals > 0))
    return np.asarray(tf * idf)


def _top(weights: np.ndarray, counts: np.ndarray, vocab: list[str], top_n: int,
         allowed: Callable[[str], bool] | None) -> list[str]:
    # Rounded so that float noise never overrides the alphabetical tie-break.
    ranked = sorted((i for i in range(len(vocab)) if counts[i] > 0),
                    key=lambda i: (-round(float(weights[i]), 12), vocab[i]))
    words = (vocab[i] for i in ranked)
    return [w for w in words if allowed is None or allowed(w)][:top_n]


# ---------------------------------------------------------------- the name rule


MAX_NAME_WORDS = 8


def readable_name(name: str, texts: Sequence[str], keywords: Sequence[str]) -> bool:
    """Whether a teacher-written name can stand: a name, not a sentence (at most MAX_NAME_WORDS
    words), made of words (no token with three or more digits, some letters) and sharing a
    content word with its cluster's analyses or keywords."""
    if len(name.split()) > MAX_NAME_WORDS:  # small teachers often write a whole sentence
        return False
    if any(sum(ch.isdigit() for ch in token) >= 3 for token in name.split()):
        return False
    if not any(ch.isalpha() for ch in name):
        return False
    return bool(content_words(name) & content_words(" ".join([*texts, *keywords])))


def readable_strategy(strategy: str, name: str, keywords: Sequence[str]) -> bool:
    """Whether a teacher-written strategy can steer generation: a few words of prose, not about
    the reply's format (a copy of the prompt's JSON instructions), and about its pattern: it
    shares a content word with the pattern's keywords or name. ("This is a JSON example where
    the answer to the question about the last letter of a word is", for addition failures, is
    not.)"""
    words, text = strategy.split(), strategy.strip()
    if len(words) < 3 or not any(ch.isalpha() for ch in text) or "json" in text.lower() or \
            text.startswith(("{", "[")):
        return False
    return bool(content_words(strategy) & content_words(" ".join([name, *keywords])))


def display_name(name: str, texts: Sequence[str], keywords: Sequence[str], cluster: int) -> str:
    """The teacher's name where readable, else the keywords joined (or 'pattern N' without any)."""
    if readable_name(name, texts, keywords):
        return name
    return " / ".join(keywords[:NAME_WORDS]) or f"pattern {cluster}"


def content_words(text: str) -> set[str]:
    """Lower-cased words of three letters or more, stop words removed, crudely stemmed."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = (w for w in _LETTERS.findall(text.lower()) if len(w) >= 3 and w not in ENGLISH_STOP_WORDS)
    return {stem(w) for w in words}


def stem(word: str) -> str:
    """A crude stemmer: enough that 'errors'/'error' and 'carries'/'carry' meet."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def with_keywords(patterns: Sequence[Pattern], groups: Mapping[int, Sequence[str]],
                  allowed: Callable[[str], bool] | None = None) -> list[Pattern]:
    """Each pattern with its cluster's keywords and a readable name (see `display_name`); the
    teacher's own reply, name included, stays in `raw`."""
    keywords = cluster_keywords(groups, allowed=allowed)
    out = []
    for p in patterns:
        kept = keywords.get(p.cluster, [])
        name = display_name(p.name, groups.get(p.cluster, ()), kept, p.cluster)
        out.append(replace(p, name=name, keywords=tuple(kept)))
    return out

