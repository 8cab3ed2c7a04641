"""A synthetic multi-document QA corpus: "KEY: value." facts amid filler prose.

A document is filler sentences with a few facts ``"QXB: 417."`` mixed in; a question
``"Q: QXB?\\nA: QXB: "`` asks for one key's value, answered ``"417"`` then EOS. The answer
line repeats the fact's own lead-in, so that answering is copying what follows an earlier
occurrence of the same text (the induction pattern a small transformer learns fast). The keys
(upper-case letters), the values (digits) and the filler words are each split once into a
training and a test vocabulary, so that test questions use keys, values and prose the model
never saw: it has to copy from the context, it cannot recall.

Three question kinds:

* ``single``: one key, whose fact is in the context (or, for training, absent: the model
  then sees an unpredictable value and learns to be unsure, which is what makes its entropy
  an honest signal of "this context does not know");
* ``pair``: ``"Q: QXB,RTY?\\nA: QXB: "`` answered ``"417, RTY: 902"``: two facts, one
  answer in two segments;
* ``latest``: a key assigned twice, ``"QXB: 417."`` then later ``"QXB: 902."``; the answer
  is the later value, so the order of the facts matters.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import string

import numpy as np

from diffusionlab import _checks
from diffusionlab.lm.tokenizer import ByteTokenizer

__all__ = ["QACorpus", "QAExample", "hamming", "training_set"]

_TRAIN_WORDS = (
    "the river moves slowly past old stone walls and quiet gardens where small birds sing "
    "every morning while the baker opens his door to warm light from the hills above town "
    "children walk along narrow lanes carrying bread and books toward a school near the "
    "harbour boats rest in calm water under grey clouds that drift over fields of wheat"
).split()
_TEST_WORDS = (
    "one violet comet crossed midnight skies as engineers calibrated copper telescopes inside "
    "humming observatories pilots reported strange auroras glowing beyond frozen tundra "
    "scientists debated quantum puzzles during lengthy seminars whereas poets sketched "
    "lyrical verses about jungles volcanoes deserts glaciers orchids zebras"
).split()


def _split(items: list[str], seed: int, test_fraction: float) -> tuple[list[str], list[str]]:
    """A fixed random split of ``items`` into (train, test)."""
    order = np.random.default_rng(seed).permutation(len(items))
    cut = int(round(len(items) * (1 - test_fraction)))
    return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]


@functools.cache
def _key_split(length: int) -> tuple[list[str], list[str]]:
    keys = ["".join(p) for p in itertools.product(string.ascii_uppercase, repeat=length)]
    return _split(keys, 1, 0.4)


@functools.cache
def _key_set(length: int, split: str) -> frozenset[str]:
    return frozenset(_key_split(length)[split == "test"])


def _near_misses(key: str, distance: int) -> list[str]:
    """Every string of upper-case letters at Hamming distance ``distance`` from ``key``."""
    out = []
    for positions in itertools.combinations(range(len(key)), distance):
        choices = [[c for c in string.ascii_uppercase if c != key[p]] for p in positions]
        for letters in itertools.product(*choices):
            chars = list(key)
            for p, c in zip(positions, letters, strict=True):
                chars[p] = c
            out.append("".join(chars))
    return out


def hamming(a: str, b: str) -> int:
    """Number of positions where two equal-length strings differ."""
    if len(a) != len(b):
        raise ValueError(f"hamming needs equal lengths; got {a!r} and {b!r}")
    return sum(x != y for x, y in zip(a, b, strict=True))


@functools.cache
def _value_split(length: int) -> tuple[list[str], list[str]]:
    return _split([f"{v:0{length}d}" for v in range(10**length)], 2, 0.25)


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One question over one or more documents.

    Attributes:
      documents: the context documents (text).
      question: the question prompt, ``"\\nQ: KEY?\\nA: KEY: "``.
      answer: the expected answer text (EOS not included).
      relevant: indices of the documents that hold the facts the answer needs.
    """

    documents: tuple[str, ...]
    question: str
    answer: str
    relevant: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class QACorpus:
    """Generator of documents and questions for one split (``"train"`` or ``"test"``).

    Attributes:
      split: which vocabulary of keys, values and filler words to draw from.
      key_length: letters per key.
      value_length: digits per value.
      facts_per_document: (min, max) facts in a document, the asked ones included.
      document_chars: (min, max) length of a document in characters (= byte tokens).
    """

    split: str = "train"
    key_length: int = 2
    value_length: int = 3
    facts_per_document: tuple[int, int] = (1, 4)
    document_chars: tuple[int, int] = (40, 110)

    def __post_init__(self):
        _checks.check_choice(self.split, "split", ("train", "test"))
        # The key and value vocabularies enumerate all strings of these lengths.
        object.__setattr__(self, "key_length", _checks.check_int(self.key_length, "key_length",
                                                                 low=1, high=4))
        object.__setattr__(self, "value_length", _checks.check_int(
            self.value_length, "value_length", low=1, high=6))
        for name in ("facts_per_document", "document_chars"):
            pair = getattr(self, name)
            if (not isinstance(pair, tuple) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                    or not 1 <= pair[0] <= pair[1] <= 10**6):
                raise ValueError(f"{name} must be a (min, max) pair of integers with "
                                 f"1 <= min <= max <= 10**6; got {pair!r}")

    # Vocabularies: fixed splits, identical for every corpus object.
    def _keys(self) -> list[str]:
        return _key_split(self.key_length)[self.split == "test"]

    def _values(self) -> list[str]:
        return _value_split(self.value_length)[self.split == "test"]

    def _words(self) -> tuple[str, ...]:
        return _TRAIN_WORDS if self.split == "train" else _TEST_WORDS

    def document(self, facts: list[tuple[str, str]], rng: np.random.Generator) -> str:
        """Filler sentences with ``facts`` ("KEY: value.") inserted in order, at random places."""
        words = self._words()
        target = int(rng.integers(self.document_chars[0], self.document_chars[1] + 1))
        fact_texts = [f"{k}: {v}." for k, v in facts]
        budget = target - sum(len(f) + 1 for f in fact_texts)
        sentences = []
        while budget > 12:
            chosen = list(rng.choice(words, int(rng.integers(3, 8))))
            while len(chosen) > 1 and len(" ".join(chosen)) + 2 > budget:
                chosen.pop()
            sentence = " ".join(chosen) + "."
            sentences.append(sentence)
            budget -= len(sentence) + 1
        slots = np.sort(rng.integers(0, len(sentences) + 1, len(fact_texts)))
        pieces = list(sentences)
        for offset, (slot, fact) in enumerate(zip(slots, fact_texts, strict=True)):
            pieces.insert(int(slot) + offset, fact)
        return " ".join(pieces)

    def _roomier(self, facts: int = 1) -> QACorpus:
        """The same corpus with documents shorter by room for ``facts`` more facts (and a
        longer question), so that two-fact examples stay within the length single ones have."""
        low, high = self.document_chars
        room = facts * (2 * self.key_length + self.value_length + 8)
        return dataclasses.replace(self, document_chars=(max(low - room, 8), max(high - room, 8)))

    def _draw(self, rng, pool: list[str], count: int, exclude=()) -> list[str]:
        excluded = set(exclude)
        if count > len(set(pool) - excluded):
            raise ValueError(f"asked for {count} distinct items but the {self.split} split has "
                             f"only {len(set(pool) - excluded)}: use fewer documents or facts, "
                             f"or longer keys (key_length)")
        chosen: list[str] = []
        while len(chosen) < count:
            item = pool[int(rng.integers(len(pool)))]
            if item not in excluded:
                chosen.append(item)
                excluded.add(item)
        return chosen

    def near_miss_keys(self, key: str, *, distance: int = 1) -> list[str]:
        """The keys of this split at Hamming distance ``distance`` from ``key`` (the same
        number of letters, ``distance`` of them substituted), in a fixed order.

        Raises:
          ValueError: ``distance`` outside ``[1, key_length]``; ``key`` not of ``key_length``
            upper-case letters.
        """
        distance = _checks.check_int(distance, "distance", low=1, high=self.key_length)
        if (not isinstance(key, str) or len(key) != self.key_length
                or any(c not in string.ascii_uppercase for c in key)):
            raise ValueError(f"key must be {self.key_length} upper-case letters; got {key!r}")
        return [k for k in _near_misses(key, distance) if k in _key_set(self.key_length,
                                                                         self.split)]

    def single(self, num_documents: int, rng: np.random.Generator, *,
               present: bool = True, near_misses: int = 0, near_miss_distance: int = 1,
               absent_answer: str | None = None) -> QAExample:
        """A one-key question over ``num_documents`` documents; exactly one holds the fact.

        With ``present=False`` no document holds it (the answer is then unpredictable, or
        ``absent_answer`` when given, e.g. ``"unknown"``).

        Confusable distractors: with ``near_misses = m > 0`` every document also holds ``m``
        facts whose keys are near misses of the asked key (Hamming distance
        ``near_miss_distance``, drawn from the same split's keys, distinct across the
        example) and whose values differ from the answer, so the answer can never be read off
        a distractor. Documents are then shorter by the room of ``m`` facts, keeping the
        length of ordinary examples. ``near_misses=0`` draws exactly what it drew before.

        Raises:
          ValueError: ``near_misses`` outside ``[0, 8]``, ``near_miss_distance`` outside
            ``[1, key_length]``, or too few near-miss keys in the split for the documents.
        """
        near_misses = _checks.check_int(near_misses, "near_misses", low=0, high=8)
        near_miss_distance = _checks.check_int(near_miss_distance, "near_miss_distance", low=1,
                                               high=self.key_length)
        if absent_answer is not None and (not isinstance(absent_answer, str)
                                          or not absent_answer):
            raise ValueError(f"absent_answer must be a non-empty string or None; got "
                             f"{absent_answer!r}")
        if near_misses:
            return self._roomier(near_misses)._single_with_near_misses(
                num_documents, rng, present=present, near_misses=near_misses,
                distance=near_miss_distance, absent_answer=absent_answer)
        example = self._single(num_documents, rng, present=present)
        if absent_answer is not None and not present:
            example = dataclasses.replace(example, answer=absent_answer)
        return example

    def _single_with_near_misses(self, num_documents, rng, *, present, near_misses, distance,
                                 absent_answer):
        example = self._single(num_documents, rng, present=present)
        asked = example.question.split("Q: ")[1].split("?")[0]
        used = {f[0] for d in example.documents for f in _FACT.findall(d)} | {asked}
        pool = [k for k in self.near_miss_keys(asked, distance=distance) if k not in used]
        needed = near_misses * num_documents
        if needed > len(pool):
            raise ValueError(f"near_misses={near_misses} over {num_documents} documents needs "
                             f"{needed} distinct keys at distance {distance} from {asked!r}, "
                             f"but the {self.split} split has {len(pool)}: use fewer, or a "
                             f"larger near_miss_distance or key_length")
        chosen = [pool[i] for i in rng.permutation(len(pool))[:needed]]
        others = [v for v in self._values() if v != example.answer]
        documents = []
        for d, document in enumerate(example.documents):
            for key in chosen[d * near_misses:(d + 1) * near_misses]:
                value = others[int(rng.integers(len(others)))]
                document = _insert_fact(document, f"{key}: {value}.", rng)
            documents.append(document)
        answer = example.answer
        if absent_answer is not None and not present:
            answer = absent_answer
        return dataclasses.replace(example, documents=tuple(documents), answer=answer)

    def _single(self, num_documents: int, rng: np.random.Generator, *,
                present: bool = True) -> QAExample:
        values = self._values()
        counts = rng.integers(self.facts_per_document[0], self.facts_per_document[1] + 1,
                              num_documents)
        keys = self._draw(rng, self._keys(), int(counts.sum()) + 1)
        asked, keys = keys[0], keys[1:]
        answer = values[int(rng.integers(len(values)))]
        holder = int(rng.integers(num_documents))
        documents, start = [], 0
        for d, count in enumerate(counts):
            facts = [(k, values[int(rng.integers(len(values)))])
                     for k in keys[start:start + count]]
            start += count
            if present and d == holder:
                facts[int(rng.integers(len(facts)))] = (asked, answer)
            documents.append(self.document(facts, rng))
        return QAExample(tuple(documents), _question(asked), answer,
                         (holder,) if present else ())

    def pair(self, rng: np.random.Generator, *, split_documents: bool,
             num_documents: int = 1) -> QAExample:
        """``"Q: K1,K2?\\nA: K1: "`` answered ``"v1, K2: v2"``; the facts share a document or not."""
        if split_documents and num_documents < 2:
            raise ValueError("split_documents needs num_documents >= 2")
        example = self._roomier().single(num_documents, rng)
        values = self._values()
        first = example.relevant[0]
        second = first if not split_documents else int(
            (first + 1 + rng.integers(num_documents - 1)) % num_documents)
        used = set("".join(example.documents).split())
        k2 = self._draw(rng, self._keys(), 1, exclude=[w.rstrip(":") for w in used])[0]
        v2 = values[int(rng.integers(len(values)))]
        documents = list(example.documents)
        documents[second] = _insert_fact(documents[second], f"{k2}: {v2}.", rng)
        k1 = example.question.split("Q: ")[1].split("?")[0]
        return QAExample(tuple(documents), f"\nQ: {k1},{k2}?\nA: {k1}: ",
                         f"{example.answer}, {k2}: {v2}",
                         tuple(sorted({first, second})))

    def latest(self, rng: np.random.Generator, *, split_documents: bool,
               num_documents: int = 1) -> QAExample:
        """A key assigned twice; the answer is the later assignment.

        With ``split_documents`` the two assignments are in documents ``i < j`` (in order).
        """
        if split_documents and num_documents < 2:
            raise ValueError("split_documents needs num_documents >= 2")
        example = self._roomier().single(num_documents, rng)
        key = example.question.split("Q: ")[1].split("?")[0]
        old = example.answer
        new = self._draw(rng, self._values(), 1, exclude=[old])[0]
        documents = list(example.documents)
        first = example.relevant[0]
        if split_documents:
            if first == num_documents - 1:  # the later assignment needs a later document
                documents[first], documents[0] = documents[0], documents[first]
                first = 0
            second = int(rng.integers(first + 1, num_documents))
            documents[second] = _insert_fact(documents[second], f"{key}: {new}.", rng)
        else:
            second = first
            documents[first] = _insert_after(documents[first], f"{key}: {old}.",
                                             f"{key}: {new}.", rng)
        return QAExample(tuple(documents), example.question, new,
                         tuple(sorted({first, second})))


def _question(key: str) -> str:
    return f"\nQ: {key}?\nA: {key}: "


def _insert_fact(document: str, fact: str, rng: np.random.Generator) -> str:
    """``fact`` inserted between two sentences of ``document`` at a random place."""
    sentences = document.split(". ")
    at = int(rng.integers(len(sentences) + 1))
    pieces = [s if s.endswith(".") else s + "." for s in sentences]
    pieces.insert(at, fact)
    return " ".join(pieces).replace("..", ".")


def _insert_after(document: str, anchor: str, fact: str, rng: np.random.Generator) -> str:
    """``fact`` inserted somewhere after the sentence ``anchor``."""
    head, tail = document.split(anchor, 1)
    tail_sentences = [s for s in tail.split(". ") if s.strip()]
    at = int(rng.integers(len(tail_sentences) + 1))
    tail_sentences = [s.strip() if s.strip().endswith(".") else s.strip() + "."
                      for s in tail_sentences]
    tail_sentences.insert(at, fact)
    return (head + anchor + " " + " ".join(tail_sentences)).replace("..", ".")


def check_mix(mix) -> None:
    """Four non-negative finite weights with a positive sum; raises naming ``mix``."""
    values = np.asarray(mix, dtype=object)
    if values.shape != (4,):
        raise ValueError(f"mix must hold 4 weights; got {mix!r}")
    _checks.check_real(np.asarray(mix, np.float64), "mix", low=0, scalar=False)
    if not np.sum(mix) > 0:
        raise ValueError(f"mix must have a positive sum; got {mix!r}")


def training_set(num_examples: int, *, seed: int, max_length: int,
                 tokenizer: ByteTokenizer | None = None,
                 corpus: QACorpus | None = None,
                 mix: tuple[float, float, float, float] = (0.6, 0.2, 0.1, 0.1),
                 extra_questions: int = 1, distractors: float = 0.0, near_misses: int = 2,
                 unknown_answer: str | None = None) -> dict[str, np.ndarray]:
    """Left-padded training sequences ``BOS document (question answer EOS)+`` and loss weights.

    Args:
      num_examples: number of sequences.
      seed: seeds the generator (numpy).
      max_length: every sequence is padded to it (one more than the trained length ``L``:
        the model reads ``L`` tokens and predicts the next ``L``).
      tokenizer: default the byte tokenizer.
      corpus: default ``QACorpus("train")``.
      mix: probabilities of (single with the fact present, single without it (including an
        empty document), pair, latest) questions.
      extra_questions: after a ``single`` question with the fact present, ask up to this
        many more about other facts of the same document, as long as the sequence fits.
        More answer tokens per sequence teach the copying faster at the same cost.
      distractors: probability in [0, 1] that a ``single`` question (fact present or absent)
        has confusable distractors: 1 to ``near_misses`` facts whose keys differ from the
        asked key in one letter, with other values (:meth:`QACorpus.single`). The model then
        has to tell the exact key from near misses, and a document without the exact key
        should leave it unsure (NBCE's premise). 0 (default) draws exactly the set it drew
        before the option existed.
      near_misses: the most near-miss facts per document, in [1, 8].
      unknown_answer: when given (e.g. ``"unknown"``), a ``single`` question whose fact is
        absent is answered with this text instead of an unpredictable value: the model learns
        to say "unknown" confidently (the supplementary notes' failure regime of NBCE).

    Returns:
      ``{"tokens": (N, L) int32, "answer": (N, L) float32}``; ``answer`` marks the targets
      that are answer tokens (EOS included), aligned with ``tokens`` (target at ``t`` is
      ``tokens[t]`` predicted from position ``t-1``).
    """
    num_examples = _checks.check_int(num_examples, "num_examples", low=1)
    seed = _checks.check_int(seed, "seed", low=0, high=2**63)
    max_length = _checks.check_int(max_length, "max_length", low=2)
    _checks.check_fits_memory("num_examples", 8.0 * num_examples * max_length, "the sequences")
    tokenizer = ByteTokenizer() if tokenizer is None else tokenizer
    corpus = QACorpus("train") if corpus is None else corpus
    if not isinstance(corpus, QACorpus):
        raise TypeError(f"corpus must be a QACorpus; got {type(corpus).__name__}")
    check_mix(mix)
    extra_questions = _checks.check_int(extra_questions, "extra_questions", low=0, high=100)
    _checks.check_real(distractors, "distractors", low=0, high=1)
    near_misses = _checks.check_int(near_misses, "near_misses", low=1, high=8)
    if unknown_answer is not None and (not isinstance(unknown_answer, str) or not unknown_answer):
        raise ValueError(f"unknown_answer must be a non-empty string or None; got "
                         f"{unknown_answer!r}")
    rng = np.random.default_rng(seed)
    tokens = np.full((num_examples, max_length), tokenizer.pad_id, np.int32)
    answer = np.zeros((num_examples, max_length), np.float32)
    kinds = rng.choice(4, num_examples, p=np.asarray(mix) / np.sum(mix))
    for i, kind in enumerate(kinds):
        # Drawn only when the option is on, so that the default set is unchanged.
        confusable = distractors > 0 and kind < 2 and rng.random() < distractors
        misses = int(rng.integers(1, near_misses + 1)) if confusable else 0
        if kind == 0:
            ex = corpus.single(1, rng, near_misses=misses)
        elif kind == 1:
            ex = corpus.single(1, rng, present=False, near_misses=misses,
                               absent_answer=unknown_answer)
            if rng.random() < 0.3:
                ex = dataclasses.replace(ex, documents=("",))
        elif kind == 2:
            ex = corpus.pair(rng, split_documents=False)
        else:
            ex = corpus.latest(rng, split_documents=False)
        pieces = [(tokenizer.encode(ex.documents[0] + ex.question, bos=True), 0.0),
                  (tokenizer.encode(ex.answer, eos=True), 1.0)]
        if kind == 0:
            facts = _FACT.findall(ex.documents[0])
            asked = ex.question.split("Q: ")[1].split("?")[0]
            others = [f for f in facts if f[0] != asked]
            for j in rng.permutation(len(others))[:extra_questions]:
                key, value = others[j]
                more = [(tokenizer.encode(_question(key)), 0.0),
                        (tokenizer.encode(value, eos=True), 1.0)]
                if sum(len(p) for p, _ in pieces + more) <= max_length:
                    pieces += more
        sequence = np.concatenate([p for p, _ in pieces])[-max_length:]
        weights = np.concatenate([np.full(len(p), w, np.float32) for p, w in pieces])
        tokens[i, max_length - len(sequence):] = sequence
        answer[i, max_length - len(sequence):] = weights[-max_length:]
    return {"tokens": tokens, "answer": answer}


_FACT = re.compile(r"([A-Z]+): (\d+)\.")
