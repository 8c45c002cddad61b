"""How the served reader answers real questions over what retrieval really returns.

The reader evaluation (`alignment/reader_eval.py`) asks held-out questions of the training
form. This one asks the RAG QA set's questions (`data/rag_eval/demo_qa.jsonl`, written by
people, about the Python topics), retrieves passages with the deployment's own retrieval
(its index, embedder, top_k, threshold and token budget), renders the prompt as serving
does, and answers with the deployment's sampling defaults (or `temperature`; 0 is greedy).
Each answer is scored on:

- **cites evidence**: it cites [n] of a retrieved passage that holds the item's evidence;
- **copied**: ≥ 80 % of its words (4 or more) occur in a passage it cites — a quoted answer;
- **evidence recall**: the share of the evidence phrase's words the answer contains (the
  best of the item's evidence phrases) — whether it carries the gold passage's key facts.

    python -m chatstack.evaluation.served_reader --config deploy/demo.toml artifacts/demo-chat
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from chatstack.alignment.reader_eval import CITATION, WORD, fact_recall
from chatstack.rag.evaluate import DEFAULT_QA, QAItem, is_relevant, load_qa
from chatstack.rag.retriever import Passage

COPIED_SHARE = 0.8


@dataclass(frozen=True)
class ServedAnswer:
    qid: str
    question: str
    answer: str
    evidence_passages: tuple[int, ...]  # [n] of the retrieved passages that hold the evidence
    cites_evidence: bool
    copied: bool
    evidence_recall: float


@dataclass(frozen=True)
class ServedReaderReport:
    questions: int
    with_evidence_retrieved: int
    cites_evidence: float
    copied: float
    evidence_recall: float
    answers: tuple[ServedAnswer, ...]
    temperature: float = 0.0
    frequency_penalty: float = 0.0

    def summary(self) -> str:
        return (f"{self.questions} questions ({self.with_evidence_retrieved} with the evidence retrieved): "
                f"cites evidence {self.cites_evidence:.2f}, copied from a cited passage {self.copied:.2f}, "
                f"evidence recall {self.evidence_recall:.2f}")


def score_answer(item: QAItem, passages: list[Passage], answer: str) -> ServedAnswer:
    evidence = tuple(n for n, p in enumerate(passages, start=1) if is_relevant(p, item))
    cited = [int(c) for c in CITATION.findall(answer) if 1 <= int(c) <= len(passages)]
    words = [w.lower() for w in WORD.findall(CITATION.sub("", answer))]
    copied = False
    if len(words) >= 4:
        for n in cited:
            shown = {w.lower() for w in WORD.findall(passages[n - 1].text)}
            copied |= sum(w in shown for w in words) >= COPIED_SHARE * len(words)
    recall = max((fact_recall(answer, e.phrase) for e in item.evidence), default=0.0)
    return ServedAnswer(item.qid, item.question, answer, evidence, any(n in evidence for n in cited), copied, recall)


def report_of(answers: list[ServedAnswer]) -> ServedReaderReport:
    n = max(len(answers), 1)
    return ServedReaderReport(len(answers), sum(bool(a.evidence_passages) for a in answers),
                              sum(a.cites_evidence for a in answers) / n, sum(a.copied for a in answers) / n,
                              sum(a.evidence_recall for a in answers) / n, tuple(answers))


def evaluate_served_reader(config_path: Path, model_dir: Path, qa_path: Path = DEFAULT_QA,
                           source_prefix: str = "python_topics/", max_new_tokens: int = 80,
                           temperature: float | None = None, frequency_penalty: float | None = None,
                           seed: int = 0) -> ServedReaderReport:
    """Answer every QA item whose evidence lies under `source_prefix` ("" for all).

    `temperature`, `frequency_penalty` None: the deployment's `generation` defaults (with its top_p / top_k)."""

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatstack.backends.base import SamplingParams
    from chatstack.backends.hf_logits import logits_processors
    from chatstack.config import load_config
    from chatstack.rag.retriever import with_passages
    from chatstack.rag.service import RetrievalService, RetrievalStatus
    from chatstack.text.chat_template import Message, render_chat

    cfg = load_config(config_path)
    retrieval = RetrievalService(cfg.retrieval)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    gen = cfg.generation
    temperature = gen.default_temperature if temperature is None else temperature
    frequency_penalty = gen.default_frequency_penalty if frequency_penalty is None else frequency_penalty
    params = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=gen.default_top_p,
                            top_k=gen.default_top_k, frequency_penalty=frequency_penalty)
    # the server's processors (backends/hf_logits.py), with generate's own warpers turned off
    plain = {"do_sample": not params.greedy, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    torch.manual_seed(seed)
    items = [i for i in load_qa(qa_path) if all(e.source.startswith(source_prefix) for e in i.evidence)]
    answers = []
    for item in items:
        result = retrieval.retrieve(item.question)
        if result.status is not RetrievalStatus.OK:
            raise RuntimeError(f"retrieval is {result.status.value}: {result.detail or 'enable it in the config'}")
        prompt = [Message("system", with_passages(cfg.sessions.system_prompt, result.passages)),
                  Message("user", item.question)]
        ids = tokenizer(render_chat(prompt, add_generation_prompt=True), return_tensors="pt",
                        add_special_tokens=False).input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=max_new_tokens,
                                 logits_processor=logits_processors(params, ids.shape[1]), **plain)
        answers.append(score_answer(item, result.passages, tokenizer.decode(out[0, ids.shape[1]:],
                                                                            skip_special_tokens=True)))
    return dataclasses.replace(report_of(answers), temperature=temperature, frequency_penalty=frequency_penalty)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("model", type=Path, help="a saved causal-LM folder (e.g. artifacts/demo-chat)")
    parser.add_argument("--config", type=Path, default=Path("deploy/demo.toml"), help="the deployment whose retrieval to use")
    parser.add_argument("--qa", type=Path, default=DEFAULT_QA)
    parser.add_argument("--temperature", type=float, help="default: the deployment's; 0: greedy")
    parser.add_argument("--frequency-penalty", type=float, help="default: the deployment's")
    parser.add_argument("--out", type=Path, help="write the report with every answer as JSON")
    parser.add_argument("--show", action="store_true", help="print every question and answer")
    args = parser.parse_args(argv)
    report = evaluate_served_reader(args.config, args.model, args.qa, temperature=args.temperature,
                                    frequency_penalty=args.frequency_penalty)
    if args.show:
        for a in report.answers:
            print(f"Q: {a.question}\n   evidence in {list(a.evidence_passages)}: {a.answer!r}")
    print(f"{args.model} (temperature {report.temperature}, frequency penalty {report.frequency_penalty}): "
          f"{report.summary()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(asdict(report), indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
