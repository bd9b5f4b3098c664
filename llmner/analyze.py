"""Failure analysis of a tagger's test predictions: what it gets wrong, why, and how two runs differ.

``python -m llmner.analyze RUN [OTHER]`` reads ``test_predictions.conll`` of a run folder (or any
``token gold predicted`` file given instead) and writes ``analysis/`` into the first run's folder:
``report.md``, CSV tables and PNG plots.

One run:
- ``categories.csv``: every gold and predicted entity in one SemEval-2013 category, per entity type:
  ``correct``, ``wrong_type`` (same span, other type), ``wrong_boundary`` (same type, overlapping
  span), ``wrong_type_and_boundary``, ``missed`` (no prediction overlaps it), ``spurious`` (it
  overlaps no gold entity). nervaluate assigns them (its strict, exact and ent_type scenarios).
- ``scores.csv``: precision/recall/F1 of the strict, exact, partial and ent_type scenarios
  (nervaluate), overall and per type. Strict F1 is conlleval's (and ``metrics.json``'s) F1.
- ``confusion_<run>.csv/.png``: gold type (rows) x predicted type (columns), ``O`` for missed
  (column) and spurious (row) entities.
- ``by_entity_length.csv``, ``by_sentence_length.csv``, ``by_seen.csv``: strict F1 by entity
  length in words, sentence length in words, and whether an entity's words occur as an entity
  in the training split (read from the run's ``.hydra/config.yaml``, or ``--train FILE``).
- ``patterns.csv`` and ``errors.csv``: the most frequent error patterns (category, gold type and
  words, predicted type and words), and every error; ``report.md`` shows examples of each.

Two runs (the same test set, checked word by word): ``comparison_categories.csv`` (deltas per
category and type), ``comparison_sentences.csv`` (which sentences each system gets entirely right)
and the paired bootstrap over sentences of ``llmner.report`` on F1.

``python -m llmner.benchmark`` calls ``analyze_benchmark``: its best system by mean ``val_f1``
against each other one, written to ``<benchmark dir>/analysis/<best>_vs_<other>/``.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from nervaluate import Evaluator, collect_named_entities
from nervaluate.entities import Entity

from llmner import cli, report
from llmner.data.conll import ConllCorpus, find_split_file, read_conll
from llmner.data.schema import DataError, Sentence, split_tag
from llmner.metrics import entity_scores

log = logging.getLogger(__name__)

CATEGORIES = ("correct", "wrong_type", "wrong_boundary", "wrong_type_and_boundary", "missed", "spurious")
ERRORS = CATEGORIES[1:]
SCENARIOS = ("strict", "exact", "partial", "ent_type")  # nervaluate's names
ENTITY_LENGTHS = ((1, 1, "1"), (2, 2, "2"), (3, 3, "3"), (4, 4, "4"), (5, None, "5+"))
SENTENCE_LENGTHS = ((1, 5, "1-5"), (6, 10, "6-10"), (11, 20, "11-20"), (21, 40, "21-40"), (41, None, "41+"))
PREDICTIONS = "test_predictions.conll"


# --- reading -----------------------------------------------------------------------------
@dataclass
class Predictions:
    """A ``token gold predicted`` file: one list of words and two of tags per sentence."""

    name: str
    path: Path
    tokens: list[list[str]]
    gold: list[list[str]]
    pred: list[list[str]]
    lines: list[int]  # the file's line number of each sentence's first word, for error messages


def predictions_path(run: str | Path) -> Path:
    """``run/test_predictions.conll`` for a run folder; ``run`` itself for a file."""
    run = Path(run)
    path = run / PREDICTIONS if run.is_dir() else run
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a run folder holding {PREDICTIONS}, or a `token gold predicted` file)")
    return path


def run_name(run: str | Path) -> str:
    """A short name for a run: its folder, with the system for a benchmark's ``<system>/seed<k>``."""
    path = predictions_path(run)
    if path.name != PREDICTIONS:
        return path.stem
    folder = path.parent
    return f"{folder.parent.name}_{folder.name}" if re.fullmatch(r"seed\d+", folder.name) else folder.name


def read_predictions(run: str | Path, name: str | None = None) -> Predictions:
    """Read a run's ``test_predictions.conll`` (or the file ``run``), checking every line.

    Each non-blank line is ``token gold predicted`` (more columns are allowed: the last two are the
    tags); a blank line ends a sentence.

    Raises:
        DataError: naming ``file:line`` for a line with fewer than 3 columns or a tag that is not
            ``O``/``B-X``/``I-X``, or a file without sentences.
    """
    path = predictions_path(run)
    tokens, gold, pred, lines = [], [], [], []
    t, g, p = [], [], []
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            cols = raw.split()
            if not cols:
                if t:
                    tokens.append(t), gold.append(g), pred.append(p)
                    t, g, p = [], [], []
                continue
            if len(cols) < 3:
                raise DataError(f"{path}:{lineno}: expected `token gold predicted` (3 columns), got {len(cols)}: {raw.rstrip()!r}")
            for tag, which in ((cols[-2], "gold"), (cols[-1], "predicted")):
                try:
                    split_tag(tag)
                except DataError:
                    raise DataError(f"{path}:{lineno}: {which} tag {tag!r} is not O, B-<type> or I-<type>") from None
            if not t:
                lines.append(lineno)
            t.append(cols[0]), g.append(cols[-2]), p.append(cols[-1])
    if t:
        tokens.append(t), gold.append(g), pred.append(p)
    if not tokens:
        raise DataError(f"{path}: no sentences found")
    return Predictions(name or run_name(run), path, tokens, gold, pred, lines)


def _resolve(path: str, run_dir: Path) -> Path | None:
    """A config's data path: absolute, or relative to the run's launch directory or the current one."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    candidates = []
    if hydra_yaml.is_file():
        from omegaconf import OmegaConf

        cwd = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.cwd", default=None)
        if cwd:
            candidates.append(Path(cwd) / p)
    candidates.append(Path.cwd() / p)
    return next((c for c in candidates if c.exists()), None)


def find_train(run: str | Path) -> tuple[list[Sentence] | None, str]:
    """The training split a run was trained on, when its config says where it is and it is readable.

    Looks for ``.hydra/config.yaml`` in the run folder (a train run: ``data.path`` and
    ``data.corpus``'s column layout) and then in up to two folders above it (a benchmark's:
    ``data_path``, read with the CoNLL corpus defaults). Data from the Hub is never fetched.

    Returns:
        The sentences (or ``None``) and a note saying where they came from, or why there are none.
    """
    from omegaconf import OmegaConf

    path = predictions_path(run)
    folder = path.parent
    for config_dir in [folder, *list(folder.parents)[:2]]:
        config = config_dir / ".hydra" / "config.yaml"
        if not config.is_file():
            continue
        cfg = OmegaConf.load(config)
        key = "data.path" if "data" in cfg else "data_path"  # a train run's config, or a benchmark's
        data_path = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if not data_path:
            return None, f"{config}: no local data path (the run read its data from the Hub); give --train FILE"
        directory = _resolve(str(data_path), config_dir)
        if directory is None:
            return None, f"{config}: data path {data_path} not found from here; give --train FILE"
        corpus = OmegaConf.select(cfg, "data.corpus", default=None, throw_on_resolution_failure=False)
        target = str(OmegaConf.select(corpus, "_target_", default="")) if corpus is not None else ""
        if target and not target.endswith("ConllCorpus"):
            return None, f"{config}: corpus {target} is not a CoNLL corpus; give --train FILE"
        columns = {k: corpus[k] for k in ("token_column", "tag_column", "separator") if corpus is not None and k in corpus}
        try:
            sentences = ConllCorpus(path=str(directory), splits=("train",), **columns).load()["train"]
        except DataError as err:
            return None, f"training split not readable: {err}"
        return sentences, f"training split: {find_split_file(directory, 'train')} ({len(sentences)} sentences)"
    return None, f"no .hydra/config.yaml in {folder} or above it; give --train FILE"


# --- categories (nervaluate) -------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """One gold or predicted entity and what became of it; ``gold``/``pred`` is ``None`` for spurious/missed."""

    sentence: int
    category: str
    gold: Entity | None
    pred: Entity | None


def entities(tags: list[list[str]]) -> list[list[Entity]]:
    """Entities per sentence, as nervaluate reads BIO tags (conlleval's rule: an ``I-X`` after ``O`` starts one)."""
    return [[Entity(e["label"], e["start"], e["end"]) for e in collect_named_entities(t)] for t in tags]


def _as_dicts(docs: list[list[Entity]]) -> list[list[dict]]:
    return [[{"label": e.label, "start": e.start, "end": e.end} for e in doc] for doc in docs]


def evaluate(gold: list[list[Entity]], pred: list[list[Entity]], types: list[str]) -> dict:
    """nervaluate's ``Evaluator.evaluate()`` on entity lists (1.x API: ``overall``, ``entities``, ``*_indices``)."""
    return Evaluator(_as_dicts(gold), _as_dicts(pred), tags=types, loader="dict").evaluate()


def _overlaps(a: Entity, b: Entity) -> bool:
    return a.start <= b.end and b.start <= a.end


def _partners(gold: list[Entity], pred: list[Entity], categories: list[str]) -> dict[int, int]:
    """Prediction index -> the index of the gold entity its category is about.

    nervaluate lists each prediction's category per scenario, not the gold entity it was paired
    with, which the confusion matrix and the error examples need. Predictions take, in order, an
    unpaired gold entity: for ``correct`` and ``wrong_type`` the one with the same span; for
    ``wrong_boundary`` an overlapping one of the same type, the closest in boundaries (ent_type's
    rule); otherwise the first overlapping one (strict's rule). So the confusion matrix's diagonal
    is correct + wrong_boundary, and the gold entities left unpaired are the missed ones.
    """
    paired: dict[int, int] = {}
    for i, (p, category) in enumerate(zip(pred, categories)):
        if category == "spurious":
            continue
        free = [j for j in range(len(gold)) if j not in paired.values() and _overlaps(p, gold[j])]
        if category in ("correct", "wrong_type"):
            best = [j for j in free if (gold[j].start, gold[j].end) == (p.start, p.end)]
        elif category == "wrong_boundary":
            best = sorted((j for j in free if gold[j].label == p.label),
                          key=lambda j: abs(gold[j].start - p.start) + abs(gold[j].end - p.end))
        else:
            best = []
        if best or free:
            paired[i] = (best or free)[0]
    return paired


def classify(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> tuple[list[Match], dict]:
    """Every gold and predicted entity in one SemEval-2013 category, and nervaluate's results.

    A prediction's category follows from its status in three nervaluate scenarios (the table in
    nervaluate's README): strict ``correct`` -> correct; strict ``spurious`` -> spurious; strict
    ``incorrect`` and exact ``correct`` (same span) -> wrong_type; and ent_type ``correct`` (same
    type, overlapping) -> wrong_boundary; otherwise wrong_type_and_boundary. Each prediction that
    is not spurious is paired with a gold entity (``_partners``); the gold entities left unpaired
    are missed, as many as strict's ``missed`` (a warning says if spans cross so that they are not).

    Returns:
        The matches, sentence by sentence, and ``Evaluator.evaluate()``'s dict.
    """
    gold, pred = entities(gold_tags), entities(pred_tags)
    types = sorted({e.label for doc in gold + pred for e in doc})
    results = evaluate(gold, pred, types)
    status: dict[str, dict[tuple[int, int], str]] = {}
    for scenario in ("strict", "exact", "ent_type"):
        indices = results["overall_indices"].get(scenario)
        status[scenario] = {}
        for name in ("correct", "incorrect", "partial", "spurious"):
            for key in getattr(indices, f"{name}_indices", []) if indices else []:
                status[scenario][tuple(key)] = name
    matches: list[Match] = []
    for s, (gs, ps) in enumerate(zip(gold, pred)):
        categories = []
        for i in range(len(ps)):
            strict = status["strict"][(s, i)]
            if strict in ("correct", "spurious"):
                categories.append(strict)
            elif status["exact"].get((s, i)) == "correct":
                categories.append("wrong_type")
            elif status["ent_type"].get((s, i)) == "correct":
                categories.append("wrong_boundary")
            else:
                categories.append("wrong_type_and_boundary")
        partners = _partners(gs, ps, categories)
        matches += [Match(s, c, gs[partners[i]] if i in partners else None, p)
                    for i, (p, c) in enumerate(zip(ps, categories))]
        matches += [Match(s, "missed", g, None) for j, g in enumerate(gs) if j not in partners.values()]
    missed = sum(m.category == "missed" for m in matches)
    if "strict" in results["overall"] and missed != results["overall"]["strict"].missed:
        log.warning("%d gold entities unpaired but nervaluate's strict scenario misses %d", missed,
                    results["overall"]["strict"].missed)
    return matches, results


def category_table(matches: list[Match], types: list[str]) -> pd.DataFrame:
    """Counts per category, one row per type and ``all``; a spurious entity counts under its predicted type."""
    counts = Counter(((m.gold or m.pred).label, m.category) for m in matches)
    rows = [{"type": t, **{c: counts[(t, c)] for c in CATEGORIES}} for t in types]
    rows.append({"type": "all", **{c: sum(r[c] for r in rows) for c in CATEGORIES}})
    return pd.DataFrame(rows)


def score_table(results: dict, types: list[str]) -> pd.DataFrame:
    """nervaluate's precision/recall/F1 per scenario, overall and per type (long format)."""
    rows = []
    for name, by_scenario in [("all", results["overall"]), *[(t, results["entities"].get(t, {})) for t in types]]:
        for scenario in SCENARIOS:
            r = by_scenario.get(scenario)
            if r is None:
                continue
            rows.append({"type": name, "scenario": scenario, "precision": r.precision, "recall": r.recall,
                         "f1": r.f1, "correct": r.correct, "incorrect": r.incorrect, "partial": r.partial,
                         "missed": r.missed, "spurious": r.spurious})
    return pd.DataFrame(rows)


def confusion(matches: list[Match], types: list[str]) -> pd.DataFrame:
    """Gold type (rows) x predicted type (columns), ``O`` for no entity, as ``_partners`` pairs them."""
    labels = [*types, "O"]
    table = pd.DataFrame(0, index=pd.Index(labels, name="gold"), columns=pd.Index(labels, name="pred"))
    for m in matches:
        table.loc[m.gold.label if m.gold else "O", m.pred.label if m.pred else "O"] += 1
    return table


# --- strict F1 of subsets ----------------------------------------------------------------
def strict_prf(gold: list[list[Entity]], pred: list[list[Entity]], types: list[str]) -> dict:
    """Strict (conlleval) precision/recall/F1 of the given entities, by nervaluate."""
    out = {"gold": sum(map(len, gold)), "pred": sum(map(len, pred)), "correct": 0,
           "precision": 0.0, "recall": 0.0, "f1": 0.0}
    if out["gold"] + out["pred"] == 0:
        return out
    r = evaluate(gold, pred, types)["overall"]["strict"]
    return out | {"correct": r.correct, "precision": r.precision, "recall": r.recall, "f1": r.f1}


def _bucket(n: int, buckets) -> str:
    return next(name for lo, hi, name in buckets if n >= lo and (hi is None or n <= hi))


def surface(tokens: list[str], e: Entity) -> str:
    return " ".join(tokens[e.start:e.end + 1])


def train_surfaces(train: list[Sentence]) -> set[str]:
    """The word strings annotated as an entity (of any type) somewhere in the training split."""
    out = set()
    for s in train:
        words = [w.replace(" ", "_") for w in s.tokens]  # as write_conll writes them
        out |= {surface(words, e) for e in entities([s.tags])[0]}
    return out


def by_property(p: Predictions, key, order: list[str], types: list[str]) -> pd.DataFrame:
    """Strict P/R/F1 of the entities grouped by ``key(sentence, tokens, entity) -> bucket``."""
    gold, pred = entities(p.gold), entities(p.pred)
    rows = []
    for name in order:
        g = [[e for e in doc if key(i, p.tokens[i], e) == name] for i, doc in enumerate(gold)]
        q = [[e for e in doc if key(i, p.tokens[i], e) == name] for i, doc in enumerate(pred)]
        rows.append({"bucket": name, **strict_prf(g, q, types)})
    return pd.DataFrame(rows)


def length_tables(p: Predictions, types: list[str], train: set[str] | None) -> dict[str, pd.DataFrame]:
    """F1 by entity length, by sentence length and (with ``train``) for seen vs unseen entities."""
    out = {
        "by_entity_length": by_property(p, lambda i, toks, e: _bucket(e.end - e.start + 1, ENTITY_LENGTHS),
                                        [b[2] for b in ENTITY_LENGTHS], types),
        "by_sentence_length": by_property(p, lambda i, toks, e: _bucket(len(toks), SENTENCE_LENGTHS),
                                          [b[2] for b in SENTENCE_LENGTHS], types),
    }
    sentences = Counter(_bucket(len(t), SENTENCE_LENGTHS) for t in p.tokens)
    out["by_sentence_length"].insert(1, "sentences", [sentences[b] for b in out["by_sentence_length"]["bucket"]])
    if train is not None:
        out["by_seen"] = by_property(p, lambda i, toks, e: "seen" if surface(toks, e) in train else "unseen",
                                     ["seen", "unseen"], types)
    return out


# --- error patterns and examples ---------------------------------------------------------
def window(tokens: list[str], *ents: Entity | None, width: int = 14) -> tuple[int, int]:
    """Word range of ``width`` words either side of the given entities (the whole of a short sentence)."""
    ents = [e for e in ents if e is not None]
    if not ents or len(tokens) <= 2 * width + 4:
        return 0, len(tokens)
    return max(0, min(e.start for e in ents) - width), min(len(tokens), max(e.end for e in ents) + 1 + width)


def mark(tokens: list[str], e: Entity | None, span: tuple[int, int] | None = None) -> str:
    """The words ``span`` (default: all) of a sentence with ``[[...]]/TYPE`` around ``e``, ``…`` where cut."""
    words = tokens[:]
    if e is not None:
        words[e.start] = f"[[{words[e.start]}"
        words[e.end] = f"{words[e.end]}]]/{e.label}"
    lo, hi = span or (0, len(words))
    return ("… " if lo else "") + " ".join(words[lo:hi]) + (" …" if hi < len(words) else "")


def mark_all(tokens: list[str], ents: list[Entity]) -> str:
    """The sentence with every entity in ``[[...]]/TYPE`` (for whole-sentence comparisons)."""
    words = tokens[:]
    for e in ents:
        words[e.start] = f"[[{words[e.start]}"
        words[e.end] = f"{words[e.end]}]]/{e.label}"
    return " ".join(words)


def error_table(p: Predictions, matches: list[Match]) -> pd.DataFrame:
    """Every match that is not correct: sentence, its first line in the file, category, gold and predicted entity."""
    rows = []
    for m in matches:
        if m.category == "correct":
            continue
        toks = p.tokens[m.sentence]
        rows.append({
            "sentence": m.sentence, "line": p.lines[m.sentence], "category": m.category,
            "gold_type": m.gold.label if m.gold else "O", "gold_words": surface(toks, m.gold) if m.gold else "",
            "pred_type": m.pred.label if m.pred else "O", "pred_words": surface(toks, m.pred) if m.pred else "",
            "gold_start": m.gold.start if m.gold else -1, "gold_end": m.gold.end if m.gold else -1,
            "pred_start": m.pred.start if m.pred else -1, "pred_end": m.pred.end if m.pred else -1,
        })
    return pd.DataFrame(rows, columns=["sentence", "line", "category", "gold_type", "gold_words", "pred_type",
                                       "pred_words", "gold_start", "gold_end", "pred_start", "pred_end"])


PATTERN_KEY = ["category", "gold_type", "gold_words", "pred_type", "pred_words"]


def pattern_table(errors: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """The ``top`` most frequent (category, gold type and words, predicted type and words); ties: first seen."""
    if errors.empty:
        return pd.DataFrame(columns=["rank", *PATTERN_KEY, "count"])
    counts = errors.groupby(PATTERN_KEY, sort=False).size().reset_index(name="count")
    counts = counts.sort_values("count", ascending=False, kind="stable").head(top).reset_index(drop=True)
    counts.insert(0, "rank", range(1, len(counts) + 1))
    return counts


def pattern_text(row) -> str:
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


# --- plots -------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(table: pd.DataFrame, title: str, path: Path) -> None:
    """Heat map of the type confusion matrix, counts written in the cells."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(table) + 1.5, 1.0 * len(table) + 1))
    values = table.to_numpy()
    im = ax.imshow(np.log1p(values), cmap="Blues")  # log: correct cells would wash out the errors
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if np.log1p(v) > np.log1p(values.max()) / 2 else "black")
    ax.set_xticks(range(len(table.columns)), table.columns)
    ax.set_yticks(range(len(table.index)), table.index)
    ax.set_xlabel("predicted (O: missed)")
    ax.set_ylabel("gold (O: spurious)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    report.save_figure(fig, path)


BUCKET_TITLES = {"by_entity_length": "by entity length (words)", "by_sentence_length": "by sentence length (words)",
                 "by_seen": "entity seen in training?"}


def plot_buckets(tables: dict[str, dict[str, pd.DataFrame]], path: Path) -> None:
    """F1 by entity length, sentence length and seen/unseen: one panel each, one line of bars per run."""
    plt = _pyplot()
    names = [n for n in ("by_entity_length", "by_sentence_length", "by_seen") if all(n in t for t in tables.values())]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    width = 0.8 / len(tables)
    for ax, name in zip(axes[0], names):
        for k, (run, t) in enumerate(tables.items()):
            df = t[name]
            ax.bar(np.arange(len(df)) + k * width - 0.4 + width / 2, df["f1"], width, label=run)
        ax.set_xticks(range(len(df)), df["bucket"])
        ax.set_ylim(0, 1)
        ax.set_title(BUCKET_TITLES[name])
        ax.set_ylabel("strict F1")
    axes[0][0].legend(fontsize=8)
    report.save_figure(fig, path)


def plot_categories(categories: dict[str, pd.DataFrame], path: Path) -> None:
    """Error counts per category (all types), grouped bars per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(categories)
    for k, (run, df) in enumerate(categories.items()):
        row = df[df["type"] == "all"].iloc[0]
        ax.bar(np.arange(len(ERRORS)) + k * width - 0.4 + width / 2, [row[c] for c in ERRORS], width, label=run)
    ax.set_xticks(range(len(ERRORS)), [c.replace("_and_", "+\n").replace("_", " ") for c in ERRORS], fontsize=8)
    ax.set_ylabel("entities")
    ax.set_title("Errors by SemEval-2013 category")
    ax.legend(fontsize=8)
    report.save_figure(fig, path)


# --- one run, two runs -------------------------------------------------------------------
@dataclass
class RunAnalysis:
    """Every table of one run."""

    predictions: Predictions
    matches: list[Match]
    types: list[str]
    categories: pd.DataFrame
    scores: pd.DataFrame
    confusion: pd.DataFrame
    buckets: dict[str, pd.DataFrame]
    errors: pd.DataFrame
    patterns: pd.DataFrame
    seqeval_f1: float


def analyze_run(p: Predictions, train: set[str] | None = None, top: int = 20) -> RunAnalysis:
    """The single-run tables of ``p`` (``train``: the training split's entity strings, for seen/unseen)."""
    matches, results = classify(p.gold, p.pred)
    types = sorted({(m.gold or m.pred).label for m in matches})
    errors = error_table(p, matches)
    return RunAnalysis(
        predictions=p, matches=matches, types=types,
        categories=category_table(matches, types), scores=score_table(results, types),
        confusion=confusion(matches, types), buckets=length_tables(p, types, train), errors=errors,
        patterns=pattern_table(errors, top), seqeval_f1=entity_scores(p.gold, p.pred, "test")["test/f1"],
    )


def check_same_test_set(a: Predictions, b: Predictions) -> None:
    """Raise ``DataError`` unless ``a`` and ``b`` hold the same sentences, words and gold tags."""
    if len(a.tokens) != len(b.tokens):
        raise DataError(f"{a.path} and {b.path} are not the same test set: {len(a.tokens)} vs {len(b.tokens)} sentences")
    for i, (ta, tb, ga, gb) in enumerate(zip(a.tokens, b.tokens, a.gold, b.gold)):
        if ta != tb or ga != gb:
            what = "words" if ta != tb else "gold tags"
            raise DataError(f"{a.path}:{a.lines[i]} and {b.path}:{b.lines[i]}: sentence {i + 1} differs in its "
                            f"{what}; the two runs must be scored on the same test set")


def compare_runs(a: RunAnalysis, b: RunAnalysis, samples: int = 1000, seed: int = 0) -> dict:
    """Category deltas, sentences right in one run and wrong in the other, paired bootstrap on F1.

    A sentence is right when its predicted entities are exactly its gold ones (none at all counts).

    Returns:
        ``categories`` (type, category, a, b, a_minus_b), ``sentences`` (one row per sentence:
        ``a_right``, ``b_right``), ``counts`` (the four cells) and ``bootstrap`` (``llmner.report``'s
        ``paired_bootstrap``: delta F1(A) - F1(B), 95% interval, p).
    """
    check_same_test_set(a.predictions, b.predictions)
    ca = a.categories.set_index("type")
    cb = b.categories.set_index("type")
    types = list(dict.fromkeys([*ca.index[:-1], *cb.index[:-1]])) + ["all"]
    ca, cb = ca.reindex(types, fill_value=0), cb.reindex(types, fill_value=0)
    cats = pd.DataFrame([{"type": t, "category": c, "a": int(ca.loc[t, c]), "b": int(cb.loc[t, c]),
                          "a_minus_b": int(ca.loc[t, c] - cb.loc[t, c])} for t in types for c in CATEGORIES])
    pa, pb = a.predictions, b.predictions
    counts_a, counts_b = report.sentence_counts(pa.gold, pa.pred), report.sentence_counts(pb.gold, pb.pred)

    def right(c: np.ndarray) -> np.ndarray:  # (S,) every predicted entity correct and none missing
        return (c[:, 0] == c[:, 1]) & (c[:, 0] == c[:, 2])

    ra, rb = right(counts_a), right(counts_b)
    sentences = pd.DataFrame({"sentence": range(len(ra)), "line": pa.lines, "gold_entities": counts_a[:, 2],
                              "a_right": ra, "b_right": rb})
    cells = {"both_right": int((ra & rb).sum()), "only_a_right": int((ra & ~rb).sum()),
             "only_b_right": int((~ra & rb).sum()), "both_wrong": int((~ra & ~rb).sum())}
    with_entities = counts_a[:, 2] > 0
    cells |= {f"{k}_with_entities": int(v) for k, v in (
        ("both_right", (ra & rb & with_entities).sum()), ("only_a_right", (ra & ~rb & with_entities).sum()),
        ("only_b_right", (~ra & rb & with_entities).sum()), ("both_wrong", (~ra & ~rb & with_entities).sum()))}
    boot = report.paired_bootstrap([counts_a], [counts_b], samples=samples, seed=seed)
    return {"categories": cats, "sentences": sentences, "counts": cells, "bootstrap": boot}


# --- writing -----------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_markdown(r: RunAnalysis, examples: int, png: str, train_note: str) -> str:
    """The report section of one run."""
    p = r.predictions
    strict = r.scores[(r.scores["type"] == "all") & (r.scores["scenario"] == "strict")]["f1"].iloc[0]
    text = f"## {p.name}\n\n`{p.path}`: {len(p.tokens)} sentences, {sum(map(len, p.tokens))} words.\n\n"
    text += (f"Strict F1 (nervaluate) **{strict:.4f}**; seqeval's entity F1 in the mode of `llmner.metrics` "
             f"(conlleval, as `metrics.json`): {r.seqeval_f1:.4f}.\n\n")
    text += "### Scores by scenario (nervaluate)\n\n"
    wide = r.scores.pivot(index="type", columns="scenario", values="f1").reindex(["all", *r.types])[list(SCENARIOS)]
    text += report.markdown_table(wide.reset_index()) + "\n"
    text += ("### Error categories (SemEval-2013)\n\nPer gold type; a spurious entity counts under its predicted "
             "type. wrong_type: same span, other type; wrong_boundary: same type, overlapping span.\n\n")
    text += report.markdown_table(r.categories) + "\n"
    text += f"### Type confusion\n\nRows gold, columns predicted; `O` column: missed, `O` row: spurious. ![confusion]({png})\n\n"
    text += report.markdown_table(r.confusion.reset_index()) + "\n"
    text += "### Strict F1 by entity length (words)\n\n" + report.markdown_table(r.buckets["by_entity_length"]) + "\n"
    text += "### Strict F1 by sentence length (words)\n\n" + report.markdown_table(r.buckets["by_sentence_length"]) + "\n"
    text += "### Entities seen vs unseen in training\n\n"
    if "by_seen" in r.buckets:
        text += (f"An entity is seen when its words are annotated as an entity (any type) in the training split; "
                 f"{train_note}.\n\n" + report.markdown_table(r.buckets["by_seen"]) + "\n")
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
    text += (f"Paired bootstrap over test sentences ({samples} samples, `llmner.report.paired_bootstrap`): "
             f"F1(A) - F1(B) = **{boot['delta']:+.4f}**, 95% interval [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}], "
             f"p = {boot['p']:.4g}.\n\n")
    cats = cmp["categories"]
    text += "### Categories, all types (A - B)\n\n"
    text += report.markdown_table(cats[cats["type"] == "all"].drop(columns="type")) + "\n"
    wide = cats[cats["type"] != "all"].pivot(index="type", columns="category", values="a_minus_b")[list(CATEGORIES)]
    text += "Per type, A - B:\n\n" + report.markdown_table(wide.reset_index()) + "\n"
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


def analyze(run: str | Path, other: str | Path | None = None, out: str | Path | None = None,
            train: str | Path | None = None, names: tuple[str, str] | None = None, top: int = 20,
            examples: int = 3, samples: int = 1000, seed: int = 0) -> Path:
    """Write the analysis of ``run`` (and its comparison with ``other``); the path of ``report.md``.

    Args:
        run: a run folder (holding ``test_predictions.conll``) or a ``token gold predicted`` file.
        other: a second run on the same test set, compared with the first.
        out: where to write (default ``analysis/`` next to the first run's predictions).
        train: a CoNLL file of the training split (default: the one the run's config names).
        names: the two runs' names in tables and file names (default: their folders).
        top: how many error patterns; examples: example sentences per pattern and comparison.
        samples, seed: the paired bootstrap's.

    Raises:
        DataError: unreadable or malformed predictions (``file:line``), two different test sets,
            or an unreadable ``train`` file.
    """
    runs = [read_predictions(run, names[0] if names else None)]
    if other is not None:
        runs.append(read_predictions(other, names[1] if names else None))
        if runs[0].name == runs[1].name:
            runs[0].name, runs[1].name = f"{runs[0].name}_a", f"{runs[1].name}_b"
        check_same_test_set(*runs)  # before any work
    out = Path(out) if out is not None else runs[0].path.parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    if train is not None:
        sentences = read_conll(train)
        note = f"training split: {train} ({len(sentences)} sentences)"
    else:
        sentences, note = find_train(run)
    seen = train_surfaces(sentences) if sentences is not None else None
    if seen is None:
        log.warning("seen/unseen table skipped: %s", note)
    results = [analyze_run(p, seen, top) for p in runs]

    def long(attr: str, key: str | None = None) -> pd.DataFrame:
        frames = [(getattr(r, attr)[key] if key else getattr(r, attr)).assign(run=r.predictions.name) for r in results]
        df = pd.concat(frames, ignore_index=True)
        return df[["run", *[c for c in df.columns if c != "run"]]]

    long("categories").to_csv(out / "categories.csv", index=False)
    long("scores").to_csv(out / "scores.csv", index=False)
    long("errors").to_csv(out / "errors.csv", index=False)
    long("patterns").to_csv(out / "patterns.csv", index=False)
    for key in results[0].buckets:
        long("buckets", key).to_csv(out / f"{key}.csv", index=False)
    pngs = {}
    for r in results:
        name = _slug(r.predictions.name)
        r.confusion.to_csv(out / f"confusion_{name}.csv")
        pngs[r.predictions.name] = f"confusion_{name}.png"
        plot_confusion(r.confusion, f"type confusion: {r.predictions.name}", out / pngs[r.predictions.name])
    plot_buckets({r.predictions.name: r.buckets for r in results}, out / "f1_by_bucket.png")
    plot_categories({r.predictions.name: r.categories for r in results}, out / "error_categories.png")

    title = " vs ".join(p.name for p in runs)
    text = f"# Failure analysis: {title}\n\n"
    text += ("Written by `python -m llmner.analyze`. Plots: `error_categories.png` (errors per category), "
             "`f1_by_bucket.png` (strict F1 by entity length, sentence length, seen/unseen), `confusion_*.png`.\n\n")
    if len(results) == 2:
        cmp = compare_runs(*results, samples=samples, seed=seed)
        cmp["categories"].to_csv(out / "comparison_categories.csv", index=False)
        cmp["sentences"].to_csv(out / "comparison_sentences.csv", index=False)
        pd.DataFrame([cmp["counts"] | {f"bootstrap_{k}": v for k, v in cmp["bootstrap"].items()}
                      | {"samples": samples}]).to_csv(out / "comparison_summary.csv", index=False)
        text += comparison_markdown(*results, cmp, samples, examples)
    for r in results:
        text += run_markdown(r, examples, pngs[r.predictions.name], note)
    (out / "report.md").write_text(text, encoding="utf-8")
    log.info("wrote %s", out / "report.md")
    return out / "report.md"


def analyze_benchmark(out_dir: str | Path, summary: pd.DataFrame, seed: int | None = None,
                      samples: int = 1000) -> list[Path]:
    """The benchmark's best system (by mean ``val_f1``) against each other one, on one seed's runs.

    Writes ``<out_dir>/analysis/<best>_vs_<other>/`` (or ``<best>/`` alone with one system) from
    ``<out_dir>/<system>/seed<k>/test_predictions.conll``; ``seed`` defaults to the smallest found.
    A system whose run of that seed has no predictions (a partial benchmark) is skipped.

    Returns:
        The paths of the ``report.md`` files written.
    """
    out_dir = Path(out_dir)
    if "val_f1" not in summary or summary["val_f1"].isna().all():
        log.warning("analysis skipped: no val_f1 in the summary to pick the best system by")
        return []
    best = str(summary.loc[summary["val_f1"].idxmax(), "system"])
    if seed is None:
        found = sorted(int(p.name[4:]) for p in (out_dir / best).glob("seed*") if p.name[4:].isdigit())
        if not found:
            log.warning("analysis skipped: no seed folder under %s", out_dir / best)
            return []
        seed = found[0]

    def predictions(system: str) -> Path | None:
        path = out_dir / system / f"seed{seed}" / PREDICTIONS
        if not path.is_file():
            log.warning("analysis: %s missing, %s skipped", path, system)
            return None
        return path

    a = predictions(best)
    if a is None:
        return []
    others = [str(s) for s in summary["system"] if str(s) != best]
    written = []
    if not others:
        written.append(analyze(a, out=out_dir / "analysis" / _slug(best), names=(best, best), samples=samples))
    for other in others:
        b = predictions(other)
        if b is not None:
            written.append(analyze(a, b, out=out_dir / "analysis" / f"{_slug(best)}_vs_{_slug(other)}",
                                   names=(best, other), samples=samples))
    return written


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m llmner.analyze", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder (with test_predictions.conll) or a `token gold predicted` file")
    parser.add_argument("other", nargs="?", help="a second run on the same test set, to compare with the first")
    parser.add_argument("--out", help="output folder (default: analysis/ in the first run's folder)")
    parser.add_argument("--train", help="CoNLL file of the training split, for seen/unseen (default: the run's config)")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), help="names of the runs in the tables")
    parser.add_argument("--top", type=int, default=20, help="error patterns listed")
    parser.add_argument("--examples", type=int, default=3, help="example sentences per pattern")
    parser.add_argument("--samples", type=int, default=1000, help="paired bootstrap samples")
    parser.add_argument("--seed", type=int, default=0, help="paired bootstrap seed")
    args = parser.parse_args(argv)
    names = tuple(args.names) if args.names else None
    path = cli.run("analyze", lambda: analyze(args.run, args.other, args.out, args.train, names,
                                              args.top, args.examples, args.samples, args.seed))
    return path


if __name__ == "__main__":
    main()
