"""The evaluation report as Markdown: the figures of both models side by side."""

from __future__ import annotations

from chatstack.evaluation.report import EvaluationReport, ModelEvaluation, reader_total


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _rows(model: ModelEvaluation) -> dict[str, str]:
    ppl, pref, reader, judge = model.perplexity, model.preference, model.reader, model.judge
    return {
        "held-out perplexity (lower is better)": _fmt(ppl and ppl.perplexity, 2),
        "held-out tokens": "–" if ppl is None else str(ppl.tokens),
        "preference accuracy": _fmt(pref and pref.accuracy),
        "mean reward margin": _fmt(pref and pref.mean_margin),
        "preference reference": "–" if pref is None else pref.reference,
        "reader: cites the right passage": _fmt(reader and reader.cited_correctly),
        "reader: says 'not covered'": _fmt(reader and reader.said_not_covered),
        "reader score (sum)": _fmt(reader_total(reader)),
        "judge mean score (1–10)": _fmt(judge and judge.mean_score, 2),
        "judge scored / unparseable / failed": "–" if judge is None else
        f"{judge.scored} / {judge.unparseable} / {judge.failed}",
    }


def _category_rows(models: list[ModelEvaluation]) -> list[str]:
    categories = sorted({c for m in models if m.judge for c in m.judge.mean_by_category})
    return [f"| judge: {c} | " + " | ".join(_fmt(m.judge.mean_by_category.get(c) if m.judge else None, 2)
                                            for m in models) + " |" for c in categories]


def to_markdown(report: EvaluationReport) -> str:
    models = [report.candidate] + ([report.baseline] if report.baseline else [])
    header = ["candidate"] + (["baseline"] if report.baseline else [])
    lines = [f"# Model evaluation ({report.created})", "",
             *[f"- {name}: `{m.model}`" for name, m in zip(header, models)], "",
             "| metric | " + " | ".join(header) + " |", "|---|" + "---|" * len(models)]
    table = [_rows(m) for m in models]
    lines += [f"| {metric} | " + " | ".join(t[metric] for t in table) + " |" for metric in table[0]]
    lines += _category_rows(models) + [""]
    for name, model in zip(header, models):
        lines += [f"- {name} skipped {metric}: {why}" for metric, why in model.skipped.items()]
    if report.pairwise:
        p = report.pairwise
        lines += ["", f"Judge pairwise (candidate vs baseline): **{p.wins} wins, {p.ties} ties, {p.losses} losses**"
                      f", {p.undecided} undecided."]
    if report.verdict:
        outcome = "better" if report.verdict.candidate_better else "not better"
        lines += ["", f"**Verdict: candidate {outcome}** — {report.verdict.reason}.", "", f"Rule: {report.verdict.rule}."]
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in report.settings.items())]
    return "\n".join(lines) + "\n"
