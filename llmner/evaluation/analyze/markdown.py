"""``report.md`` of the failure analysis: marked-up example sentences, one run's section, two runs' section."""

from __future__ import annotations

import pandas as pd
from nervaluate.entities import Entity

from llmner.evaluation.analyze.analysis import RunAnalysis
from llmner.evaluation.analyze.categories import CATEGORIES, SCENARIOS, entities
from llmner.evaluation.analyze.patterns import PATTERN_KEY
from llmner.evaluation.markdown import markdown_table
from llmner.evaluation.predictions import Predictions


def window(tokens: list[str], *ents: Entity | None, width: int = 14) -> tuple[int, int]:
    """Word range of ``width`` words either side of the given entities (the whole of a short sentence)."""
    ents = [e for e in ents if e is not None]
    if not ents or len(tokens) <= 2 * width + 4:
        return 0, len(tokens)
    return max(0, min(e.start for e in ents) - width), min(len(tokens), max(e.end for e in ents) + 1 + width)


def _marked(tokens: list[str], ents: list[Entity]) -> list[str]:
    """The words with ``[[...]]/TYPE`` around each entity of ``ents``."""
    words = tokens[:]
    for e in ents:
        words[e.start] = f"[[{words[e.start]}"
        words[e.end] = f"{words[e.end]}]]/{e.label}"
    return words


def mark(tokens: list[str], e: Entity | None, span: tuple[int, int] | None = None) -> str:
    """The words ``span`` (default: all) of a sentence with ``[[...]]/TYPE`` around ``e``, ``…`` where cut."""
    words = _marked(tokens, [e] if e is not None else [])
    lo, hi = span or (0, len(words))
    return ("… " if lo else "") + " ".join(words[lo:hi]) + (" …" if hi < len(words) else "")


def mark_all(tokens: list[str], ents: list[Entity]) -> str:
    """The sentence with every entity in ``[[...]]/TYPE`` (for whole-sentence comparisons)."""
    return " ".join(_marked(tokens, ents))


def pattern_text(row) -> str:
    """One pattern (a row of ``pattern_table``) in words: ``category: gold TYPE "words" → pred TYPE "words"``."""
    gold = f'{row.gold_type} "{row.gold_words}"' if row.gold_type != "O" else "O"
    pred = f'{row.pred_type} "{row.pred_words}"' if row.pred_type != "O" else "O"
    return f"{row.category}: gold {gold} → pred {pred}"


def pattern_examples(p: Predictions, errors: pd.DataFrame, patterns: pd.DataFrame, n: int = 3) -> str:
    """Markdown: each pattern with up to ``n`` example sentences, the gold and the predicted span marked."""
    lines = []
    for row in patterns.itertuples(index=False):
        hits = errors[(errors[PATTERN_KEY] == pd.Series(row._asdict())[PATTERN_KEY].values).all(axis=1)]
        lines.append(f"{row.rank}. **{pattern_text(row)}** ({row.count}×)")
        for e in hits.drop_duplicates("sentence").head(n).itertuples(index=False):
            toks = p.tokens[e.sentence]
            g = Entity(e.gold_type, e.gold_start, e.gold_end) if e.gold_type != "O" else None
            q = Entity(e.pred_type, e.pred_start, e.pred_end) if e.pred_type != "O" else None
            span = window(toks, g, q)
            lines.append(f"   - line {e.line}  \n     gold: {mark(toks, g, span)}  \n     pred: {mark(toks, q, span)}")
    return "\n".join(lines) + "\n"


def run_markdown(r: RunAnalysis, examples: int, png: str, train_note: str) -> str:
    """The report section of one run."""
    p = r.predictions
    strict = r.scores[(r.scores["type"] == "all") & (r.scores["scenario"] == "strict")]["f1"].iloc[0]
    text = f"## {p.name}\n\n`{p.path}`: {len(p.tokens)} sentences, {sum(map(len, p.tokens))} words.\n\n"
    text += (f"Strict F1 (nervaluate) **{strict:.4f}**; seqeval's entity F1 in the mode of `llmner.metrics` "
             f"(conlleval, as `metrics.json`): {r.seqeval_f1:.4f}.\n\n")
    text += "### Scores by scenario (nervaluate)\n\n"
    wide = r.scores.pivot(index="type", columns="scenario", values="f1").reindex(["all", *r.types])[list(SCENARIOS)]
    text += markdown_table(wide.reset_index()) + "\n"
    text += ("### Error categories (SemEval-2013)\n\nPer gold type; a spurious entity counts under its predicted "
             "type. wrong_type: same span, other type; wrong_boundary: same type, overlapping span.\n\n")
    text += markdown_table(r.categories) + "\n"
    text += f"### Type confusion\n\nRows gold, columns predicted; `O` column: missed, `O` row: spurious. ![confusion]({png})\n\n"
    text += markdown_table(r.confusion.reset_index()) + "\n"
    text += "### Strict F1 by entity length (words)\n\n" + markdown_table(r.buckets["by_entity_length"]) + "\n"
    text += "### Strict F1 by sentence length (words)\n\n" + markdown_table(r.buckets["by_sentence_length"]) + "\n"
    text += "### Entities seen vs unseen in training\n\n"
    if "by_seen" in r.buckets:
        text += (f"An entity is seen when its words are annotated as an entity (any type) in the training split; "
                 f"{train_note}.\n\n" + markdown_table(r.buckets["by_seen"]) + "\n")
    else:
        text += f"Skipped: {train_note}.\n\n"
    text += (f"### The {len(r.patterns)} most frequent error patterns\n\nWith up to {examples} example sentences; "
             "the gold and the predicted entity in `[[...]]/TYPE`; `line`: the sentence's first line in the file.\n\n")
    text += pattern_examples(p, r.errors, r.patterns, examples) + "\n"
    return text


def comparison_markdown(a: RunAnalysis, b: RunAnalysis, cmp: dict, samples: int, examples: int) -> str:
    """The report section comparing two runs."""
    text = f"## {a.predictions.name} (A) vs {b.predictions.name} (B)\n\n"
    boot = cmp["bootstrap"]
    text += (f"Paired bootstrap over test sentences ({samples} samples, `llmner.evaluation.statistics.paired_bootstrap`): "
             f"F1(A) - F1(B) = **{boot['delta']:+.4f}**, 95% interval [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}], "
             f"p = {boot['p']:.4g}.\n\n")
    cats = cmp["categories"]
    text += "### Categories, all types (A - B)\n\n"
    text += markdown_table(cats[cats["type"] == "all"].drop(columns="type")) + "\n"
    wide = cats[cats["type"] != "all"].pivot(index="type", columns="category", values="a_minus_b")[list(CATEGORIES)]
    text += "Per type, A - B:\n\n" + markdown_table(wide.reset_index()) + "\n"
    c = cmp["counts"]
    text += ("### Sentences entirely right (all entities, no spurious one)\n\n"
             "| | all sentences | with gold entities |\n|---|---|---|\n")
    for k in ("both_right", "only_a_right", "only_b_right", "both_wrong"):
        text += f"| {k} | {c[k]} | {c[k + '_with_entities']} |\n"
    s = cmp["sentences"]
    pa, pb = a.predictions, b.predictions
    gold, ea, eb = entities(pa.gold), entities(pa.pred), entities(pb.pred)
    for label, mask in (("A right, B wrong", s["a_right"] & ~s["b_right"]), ("B right, A wrong", ~s["a_right"] & s["b_right"])):
        rows = s[mask & (s["gold_entities"] > 0)].head(examples)
        text += f"\n{label}, the first {len(rows)} with entities:\n\n"
        for row in rows.itertuples(index=False):
            i = row.sentence
            text += (f"- line {row.line}  \n  gold: {mark_all(pa.tokens[i], gold[i])}  \n"
                     f"  A: {mark_all(pa.tokens[i], ea[i])}  \n  B: {mark_all(pa.tokens[i], eb[i])}\n")
    return text + "\n"


def report_markdown(results: list[RunAnalysis], cmp: dict | None, pngs: dict[str, str], train_note: str,
                    samples: int, examples: int) -> str:
    """The whole ``report.md``: a title, the comparison of two runs (``cmp``) if any, then each run's section."""
    text = f"# Failure analysis: {' vs '.join(r.predictions.name for r in results)}\n\n"
    text += ("Written by `python -m llmner.analyze`. Plots: `error_categories.png` (errors per category), "
             "`f1_by_bucket.png` (strict F1 by entity length, sentence length, seen/unseen), `confusion_*.png`.\n\n")
    if cmp is not None:
        text += comparison_markdown(*results, cmp, samples, examples)
    for r in results:
        text += run_markdown(r, examples, pngs[r.predictions.name], train_note)
    return text
