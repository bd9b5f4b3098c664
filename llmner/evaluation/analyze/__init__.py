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
and the paired bootstrap over sentences (``llmner.evaluation.statistics``) on F1.

``python -m llmner.benchmark`` calls ``benchmark.analyze_benchmark``: its best system by mean
``val_f1`` against each other one, written to ``<benchmark dir>/analysis/<best>_vs_<other>/``.

Modules, one job each: ``training`` (the training split a run names), ``categories`` (nervaluate's
categories, scores, confusion), ``buckets`` (F1 by length and seen/unseen), ``patterns`` (errors
and their most frequent patterns), ``analysis`` (every table of one run, two runs compared),
``markdown`` (``report.md``), ``plots``, ``write`` (the files of ``analyze``), ``benchmark``.
"""
