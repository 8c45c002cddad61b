"""Evaluate one model, or compare a candidate with a baseline, and write the report.

    settings = EvalSettings()
    report = evaluate(Path("artifacts/demo-dpo"), Path("artifacts/demo-sft"), settings, judge=None)
    write_report(report, Path("build/eval"))   # report.json + report.md
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from chatstack.alignment.reader_eval import evaluate_loaded_reader
from chatstack.config import GenerationSection
from chatstack.evaluation.answering import Answer, Answerer, LocalAnswerer
from chatstack.evaluation.cli import METRICS
from chatstack.evaluation.judge import JudgeEndpoint, Outcome, grade
from chatstack.evaluation.markdown import to_markdown
from chatstack.evaluation.models import LoadedModel, check_model_dir, load_model, parent_model
from chatstack.evaluation.perplexity import default_held_out_texts, perplexity, read_texts
from chatstack.evaluation.preference import PreferenceSet, preference_score
from chatstack.evaluation.questions import DEFAULT_QUESTIONS, JudgeQuestion, load_questions
from chatstack.evaluation.report import EvaluationReport, JudgeSummary, ModelEvaluation, decide, pairwise

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = METRICS
    held_out: tuple[Path, ...] = ()  # empty: the project's docs/*.md
    window: int = 256
    preference: PreferenceSet = PreferenceSet()
    reference: Path | None = None  # None: each model's own parent (from its training summary)
    reader_count: int = 60
    reader_decoding: GenerationSection | None = None  # answer the reader eval as this deployment decodes
    questions: Path = DEFAULT_QUESTIONS
    question_limit: int | None = None
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be a non-empty subset of {list(METRICS)}, got {list(self.metrics)}")
        if self.reader_count < 1:
            raise ValueError(f"reader_count must be >= 1, got {self.reader_count}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.reference is not None:
            check_model_dir(self.reference, "reference")


@dataclass
class _Run:
    """What one model's evaluation needs besides the model: the judge and the shared inputs."""

    settings: EvalSettings
    judge: JudgeEndpoint | None
    questions: list[JudgeQuestion] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)


def summarise(judge: JudgeEndpoint, questions: list[JudgeQuestion], answers: dict[str, Answer]) -> JudgeSummary:
    grades = [grade(judge, q, answers[q.id]) for q in questions]
    scored = [g for g in grades if g.outcome is Outcome.SCORED]
    by_category: dict[str, list[float]] = {}
    for question, g in zip(questions, grades):
        if g.score is not None:
            by_category.setdefault(question.category, []).append(g.score)
    return JudgeSummary(
        judge=judge.name, mean_score=sum(g.score for g in scored) / len(scored) if scored else None,
        scored=len(scored), unparseable=sum(g.outcome is Outcome.UNPARSEABLE for g in grades),
        failed=sum(g.outcome is Outcome.FAILED for g in grades),
        mean_by_category={c: sum(v) / len(v) for c, v in sorted(by_category.items())}, grades=grades,
    )


def _preference(loaded: LoadedModel, run: _Run, skipped: dict[str, str]):
    reference_dir = run.settings.reference or parent_model(loaded.path)
    if reference_dir is None:
        skipped["preference"] = "no reference model: pass --reference (the model has no training summary naming one)"
        return None
    if Path(reference_dir).resolve() == loaded.path.resolve():
        skipped["preference"] = "the reference is the model itself"
        return None
    return preference_score(loaded, load_model(reference_dir, "reference"), run.settings.preference)


def evaluate_model(model_dir: Path, run: _Run, answerer: Answerer | None = None) -> ModelEvaluation:
    """Every metric in `run.settings.metrics` for one model folder."""
    started, metrics, skipped = time.monotonic(), run.settings.metrics, {}
    loaded = load_model(model_dir, "model")
    ppl = perplexity(loaded, run.texts, run.settings.window) if "perplexity" in metrics else None
    pref = _preference(loaded, run, skipped) if "preference" in metrics else None
    reader = evaluate_loaded_reader(loaded.model, loaded.tokenizer, run.settings.reader_count,
                                    decoding=run.settings.reader_decoding) \
        if "reader" in metrics else None
    answers: dict[str, Answer] = {}
    judge = None
    if "judge" in metrics:
        source = answerer or LocalAnswerer(loaded, run.settings.max_new_tokens)
        answers = {q.id: source.answer(q) for q in run.questions}
        if run.judge is None:
            skipped["judge"] = "no judge given (--judge-url/--judge-model or --judge-triton): answers only"
        else:
            judge = summarise(run.judge, run.questions, answers)
    logger.info("evaluated %s in %.0f s", model_dir, time.monotonic() - started)
    return ModelEvaluation(str(model_dir), ppl, pref, reader, judge,
                           {k: list(a.replies) for k, a in answers.items()}, skipped)


def evaluate(candidate: Path, baseline: Path | None, settings: EvalSettings, judge: JudgeEndpoint | None = None,
             candidate_answerer: Answerer | None = None) -> EvaluationReport:
    check_model_dir(candidate, "candidate")
    if baseline is not None:
        check_model_dir(baseline, "baseline")
    run = _Run(settings, judge)
    if "perplexity" in settings.metrics:
        run.texts = read_texts(list(settings.held_out)) if settings.held_out else default_held_out_texts()
    if "judge" in settings.metrics:
        run.questions = load_questions(settings.questions, settings.question_limit)
    mine = evaluate_model(candidate, run, candidate_answerer)
    theirs = evaluate_model(baseline, run) if baseline is not None else None
    pairs = pairwise(mine.judge.grades, theirs.judge.grades) if mine.judge and theirs and theirs.judge else None
    verdict = decide(mine, theirs, pairs) if theirs is not None else None
    shown = {k: v if isinstance(v, (int, str, type(None))) else str(v) for k, v in dataclasses.asdict(settings).items()}
    decoding = settings.reader_decoding
    shown |= {"held_out": [str(p) for p in settings.held_out] or "docs/*.md", "judge": judge.name if judge else None,
              "reader_decoding": None if decoding is None else dataclasses.asdict(decoding)}
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return EvaluationReport(created, shown, mine, theirs, pairs, verdict)


def write_report(report: EvaluationReport, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(report.to_json(), encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, md_path
