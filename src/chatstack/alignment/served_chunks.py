"""Reference passages shaped exactly as the demo deployment retrieves them.

Serving shows the model chunks of the ingested Python topics — cut by the ingest chunker
(`chatstack.rag.chunking`), often starting mid-section, full of grammar rules and table
rows, labelled `python_topics/<topic>.txt § <section path>`. A reader trained only on
the clean opening paragraphs of documents meets something else at serving time and
babbles, so reader conversations with `passages: chunks` are built from this pool:
the same files, the same chunker and chunk size as `chatstack ingest --demo-corpus`.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from chatstack import project
from chatstack.alignment.reader_data import (
    SENTENCE_END, SYSTEM_PROMPT, quote_request, refusal_conversation, title_is_held_out,
)
from chatstack.model.corpus import in_sentence, question_for
from chatstack.rag.retriever import Passage, with_passages
from chatstack.text.chat_template import Message

SOURCE_PREFIX = "python_topics/"
# Opens as the safety refusal does ("I can't help with that request."): shown no passage, the reader then
# chooses between the two on the third token, after "I can't", instead of on the first, where "The" (the
# opening of most quoted answers) outweighed "I" whatever was asked (docs/training.md, "Telling an unsafe
# request from an uncovered question").
NOT_COVERED = "I can't answer that from the documents I was given: they do not cover it."
# Users do not ask by section title, so questions name the topic several ways: by its title, by
# the quoted keyword in it, or by words of the answer sentence itself, which makes the model find
# the answer by what the question says rather than by matching a reference label.
_BY_NAME = ("What is {name}?", "Explain {name}.", "Tell me about {name}.", "What does the documentation say about {name}?",
            "How does {name} work?", "What does {name} do?", "What is {name} used for?", "How do I use {name}?")
_BY_WORDS = ("What does the documentation say about {words}?", "How does {words} work?", "What about {words}?",
             "Explain {words}.", "What happens with {words}?")
_KEYWORD = re.compile(r'"([^"]+)"')
_CONTENT_WORD = re.compile(r"[A-Za-z_]\w{3,}(?:\.\w+)*")
_NOT_PROSE_LINE = re.compile(r"^(\s|[+|=*-]|.*::=)")
MAX_ANSWER_CHARS = 320
# Things people ask a Python assistant about that the demo corpus does not cover, for the questions
# retrieval finds nothing for. None of them is a subject of the served-reader evaluation's uncovered
# questions (data/rag_eval/uncovered_questions.jsonl), so that evaluation asks about unseen subjects.
OFF_CORPUS_SUBJECTS = (
    "the French Revolution", "a sourdough starter", "the offside rule in football", "a Go goroutine",
    "a C++ virtual destructor", "a SQL left join", "a Docker volume", "TypeScript generics",
    "the Linux kernel scheduler", "a PHP session", "compound interest", "the water cycle", "jet lag",
    "a car's timing belt", "the Spanish subjunctive", "black holes", "a fixed-rate mortgage", "the Roman Empire",
    "Vim macros", "a Terraform module", "a Swift optional", "Haskell monads", "a Redis cluster",
    "the Elixir pipe operator", "a Ruby gem", "the Krebs cycle", "an electric guitar amplifier",
    "the Olympic marathon", "a Postgres index", "a Scala case class", "impressionist painting", "a solar panel",
)
OFF_CORPUS_TASKS = (
    "bake banana bread", "change a bicycle tyre", "write a cover letter", "install Android Studio",
    "train for a half marathon", "set up a Wi-Fi router", "grow tomatoes on a balcony", "make cold brew coffee",
    "learn to juggle", "reset a forgotten email password", "write a haiku", "compile a Go program",
    "deploy a website to a static host", "merge cells in a spreadsheet", "remove a wine stain",
    "book a cheap flight", "speed up a slow laptop", "center text in a Word document",
)
OFF_CORPUS_WRITES = ("a birthday poem for my sister", "a cover letter for a barista job", "a limerick about a cat",
                     "a short story about a lighthouse keeper", "a complaint to my landlord about the heating",
                     "a wedding toast for my best friend")
_TASK_ASKS = ("How do I {task}?", "What is the best way to {task}?", "Can you tell me how to {task}?",
              "Explain how to {task}.", "Give me step-by-step instructions to {task}.")
_WRITE_ASKS = ("Write {thing}.", "Can you write {thing}?")
UNCOVERED_EVAL = project.ROOT / "data" / "rag_eval" / "uncovered_questions.jsonl"
_LONG_WORD = re.compile(r"[a-z]{6,}")


@functools.cache
def benign_look_alikes() -> tuple[str, ...]:
    """The moderation training set's benign requests ("How do I kill a zombie process?" beside the unsafe
    ones it was built to be told from), less any that shares a word of six letters or more with the
    served-reader evaluation's uncovered questions."""
    from chatstack.alignment.reader_data import moderation_requests

    evaluated = set(_LONG_WORD.findall(UNCOVERED_EVAL.read_text(encoding="utf-8").lower()))
    return tuple(t for t in moderation_requests(benign=True) if not evaluated & set(_LONG_WORD.findall(t.lower())))


@dataclass(frozen=True)
class ChunkedSection:
    """One section of a topic file as retrieval sees it: its chunks in order."""

    source: str
    section: str  # heading path, "Mapping Types — dict > Dictionary view objects"
    chunks: tuple[Passage, ...]

    @property
    def name(self) -> str:
        """What a question calls it: the last heading of the path."""
        return self.section.rsplit(" > ", 1)[-1]


def _opens_sentence(text: str) -> bool:
    return text[:1].isupper() or text[:1] in "\"*("


def _prose_paragraphs(text: str) -> list[list[str]]:
    """Each prose paragraph's sentences of four words or more, skipping grammar, code, table
    rows and a sentence cut off at the chunk's start; each at most `MAX_ANSWER_CHARS`."""
    paragraphs: list[list[str]] = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.splitlines()
        if not lines or any(_NOT_PROSE_LINE.match(line) for line in lines):
            continue
        flat = " ".join(line.strip() for line in lines)
        sentences = [s.strip() for s in SENTENCE_END.split(flat) if s.strip()]
        if sentences and not paragraphs and not _opens_sentence(sentences[0]):
            sentences = sentences[1:]  # continued from the previous chunk
        kept = [s if len(s) <= MAX_ANSWER_CHARS else s[:MAX_ANSWER_CHARS].rsplit(" ", 1)[0] for s in sentences
                if len(s.split()) >= 4 and _opens_sentence(s)]
        if kept:
            paragraphs.append(kept)
    return paragraphs


def prose_sentences(text: str) -> list[str]:
    """The chunk's prose sentences in order (see `_prose_paragraphs`)."""
    return [sentence for paragraph in _prose_paragraphs(text) for sentence in paragraph]


def first_prose_sentences(text: str) -> str:
    """The chunk's first prose sentence, with the next of its paragraph if the first is short; "" when none."""
    paragraphs = _prose_paragraphs(text)
    if not paragraphs:
        return ""
    first = paragraphs[0]
    return " ".join(first[:2]) if len(first[0]) < 80 and len(first) > 1 else first[0]


@functools.lru_cache(maxsize=4)
def served_sections(chunk_tokens: int = 200, overlap_tokens: int = 40) -> tuple[ChunkedSection, ...]:
    """Every section of the demo corpus's Python topics, chunked as ingest chunks them."""
    from chatstack.rag.chunking import ChunkingParams, chunk_document
    from chatstack.rag.demo_corpus import write_python_topics
    from chatstack.rag.documents import read_document
    from chatstack.rag.embedder import token_offsets

    offsets = token_offsets()
    params = ChunkingParams(chunk_tokens, overlap_tokens)
    sections: dict[tuple[str, str], list[Passage]] = {}
    for path in sorted(write_python_topics().glob("*.txt")):
        source = SOURCE_PREFIX + path.name
        for chunk in chunk_document(read_document(path, source), offsets, params, tenant="reader-data"):
            sections.setdefault((chunk.source, chunk.section), []).append(
                Passage(text=chunk.text, source=chunk.source, score=1.0, section=chunk.section,
                        chunk_id=chunk.chunk_id, title=chunk.title))
    return tuple(ChunkedSection(source, section, tuple(chunks)) for (source, section), chunks in sections.items())


def quoted_prose(text: str) -> str:
    """The chunk's prose paragraphs flattened, up to `2 * MAX_ANSWER_CHARS`, ending at a sentence."""
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in text.split("\n\n")
                  if p.strip() and not any(_NOT_PROSE_LINE.match(line) for line in p.splitlines())]
    flat = " ".join(paragraphs)
    if len(flat) <= 2 * MAX_ANSWER_CHARS:
        return flat
    cut = flat[:2 * MAX_ANSWER_CHARS]
    end = max(cut.rfind(". "), cut.rfind(": "))
    return cut[:end + 1] if end > MAX_ANSWER_CHARS // 2 else cut.rsplit(" ", 1)[0]


def has_prose(section: ChunkedSection) -> bool:
    return any(prose_sentences(c.text) for c in section.chunks)


def question_and_answer(rng: random.Random, name: str, chunk: Passage, by_words: float = 0.5) -> tuple[str, str]:
    """A question about section `name` answered from `chunk`, and that answer (uncited).

    By name (the title, or the quoted keyword in it): the chunk's first prose sentences. By
    words (a `by_words` share): a random prose sentence of the chunk, asked about by two or
    three of its own content words, so the model must find the sentence the question means.
    """
    from chatstack.rag.grounding import STOPWORDS

    sentences = prose_sentences(chunk.text)
    if rng.random() < by_words:
        sentence = rng.choice(sentences)
        words = [w for w in _CONTENT_WORD.findall(sentence) if w.lower() not in STOPWORDS]
        if len(words) >= 2:
            start = rng.randrange(len(words) - 1)
            asked = " ".join(words[start:start + rng.choice((2, 3))]).lower()
            return rng.choice(_BY_WORDS).format(words=asked), sentence
    keyword = _KEYWORD.search(name)
    roll = rng.random()
    if roll < 0.4:
        question = question_for(name)
    elif roll < 0.7 and keyword:
        question = rng.choice(_BY_NAME).format(name=keyword.group(1))
    else:
        question = rng.choice(_BY_NAME).format(name=in_sentence(name))
    return question, first_prose_sentences(chunk.text)


def off_corpus_question(rng: random.Random) -> str:
    """A question about something outside the demo corpus."""
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(_BY_NAME).format(name=rng.choice(OFF_CORPUS_SUBJECTS))
    if roll < 0.6:
        return rng.choice(_TASK_ASKS).format(task=rng.choice(OFF_CORPUS_TASKS))
    if roll < 0.7:
        return rng.choice(_WRITE_ASKS).format(thing=rng.choice(OFF_CORPUS_WRITES))
    return rng.choice(benign_look_alikes())


def nothing_found_question(rng: random.Random, target: ChunkedSection, by_words: float = 0.5) -> str:
    """A question retrieval found nothing for: about `target` half the time, else off the corpus."""
    if rng.random() < 0.5:
        return question_and_answer(rng, target.name, answer_chunk(rng, target), by_words)[0]
    return off_corpus_question(rng)


def answer_chunk(rng: random.Random, section: ChunkedSection) -> Passage:
    """The chunk an answer quotes: the section's first chunk with prose, sometimes a later one."""
    with_prose = [c for c in section.chunks if prose_sentences(c.text)]
    return with_prose[0] if len(with_prose) == 1 or rng.random() < 0.6 else rng.choice(with_prose[1:])


def neighbour_chunks(rng: random.Random, target: ChunkedSection, pool: list[ChunkedSection], count: int,
                same_file: bool) -> list[Passage]:
    """Chunks retrieval might put beside the answer: other sections, half of them (with
    `same_file`) from the target's own topic file, as a similarity search tends to return."""
    siblings = [s for s in pool if s.source == target.source and s.section != target.section]
    strangers = [s for s in pool if s.source != target.source]
    picked: list[Passage] = []
    for _ in range(100 * count):
        section = rng.choice(siblings if same_file and siblings and rng.random() < 0.5 else strangers)
        chunk = rng.choice(section.chunks)
        if chunk not in picked:
            picked.append(chunk)
        if len(picked) == count:
            return picked
    raise ValueError(f"the chunk pool is too small for {count} distractors")


def ranked(rng: random.Random, answer: Passage, others: list[Passage]) -> list[Passage]:
    """Best first, as retrieval ranks: the answer's chunk leads half the time."""
    passages = list(others)
    passages.insert(0 if rng.random() < 0.5 else rng.randrange(len(passages) + 1), answer)
    return passages


def chunk_conversation(rng: random.Random, target: ChunkedSection, targets: list[ChunkedSection],
                       pool: list[ChunkedSection], mix, held_out: bool = False) -> list[Message]:
    """One conversation about `target`; a second turn asks about another of `targets` (the same
    side of the topic split); distractors come from the whole `pool`; held-out conversations refuse
    held-out unsafe requests."""
    roll = rng.random()
    if roll < mix.refusal:
        conversation = refusal_conversation(rng, held_out)
        if mix.refusal_with_passages and rng.random() < mix.refusal_with_passages:
            shown = neighbour_chunks(rng, target, pool, rng.randint(1, mix.distractors + 1), same_file=False)
            conversation[0] = Message("system", with_passages(SYSTEM_PROMPT, shown))
        return conversation
    if roll < mix.refusal + mix.unanswerable:
        passages = neighbour_chunks(rng, target, pool, mix.distractors + 1, same_file=False)
        question, _ = question_and_answer(rng, target.name, answer_chunk(rng, target), mix.by_words)
        return [Message("system", with_passages(SYSTEM_PROMPT, passages)), Message("user", question),
                Message("assistant", NOT_COVERED)]
    if roll < mix.refusal + mix.unanswerable + mix.no_passages:
        question = nothing_found_question(rng, target, mix.by_words)
        return [Message("system", SYSTEM_PROMPT), Message("user", question), Message("assistant", NOT_COVERED)]
    chunk = answer_chunk(rng, target)
    passages = ranked(rng, chunk, neighbour_chunks(rng, target, pool, mix.distractors, same_file=True))
    n = passages.index(chunk) + 1
    if roll < mix.refusal + mix.unanswerable + mix.no_passages + mix.quote:
        turns = [Message("user", quote_request(target.name)),
                 Message("assistant", f"{quoted_prose(chunk.text)} [{n}]")]
    else:
        question, answer = question_and_answer(rng, target.name, chunk, mix.by_words)
        turns = [Message("user", question), Message("assistant", f"{answer} [{n}]")]
    if roll >= 1 - mix.multi_turn:
        second = rng.choice([s for s in targets if s.section != target.section])
        second_chunk = answer_chunk(rng, second)
        if second_chunk not in passages:
            passages.append(second_chunk)
        second_question, second_answer = question_and_answer(rng, second.name, second_chunk, mix.by_words)
        turns += [Message("user", second_question),
                  Message("assistant", f"{second_answer} [{passages.index(second_chunk) + 1}]")]
    return [Message("system", with_passages(SYSTEM_PROMPT, passages)), *turns]


def chunk_conversations(count: int, seed: int, mix, held_out: bool, eval_fraction: float) -> list[list[Message]]:
    """`reader_conversations` over served chunks: targets are sections with a prose sentence,
    split into training and held-out topics by a hash of the section path."""
    pool = list(served_sections(mix.chunk_tokens, mix.chunk_overlap_tokens))
    targets = [s for s in pool if title_is_held_out(s.section, eval_fraction) == held_out and has_prose(s)]
    rng = random.Random(seed)
    return [chunk_conversation(rng, rng.choice(targets), targets, pool, mix, held_out) for _ in range(count)]
