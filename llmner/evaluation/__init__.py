"""Everything that reads a run's outputs and scores them; nothing here knows about models.

- ``predictions``: the one reader/writer of ``token gold predicted`` files and JSONL answers.
- ``runs``: a run folder's other files (``metrics.json``, results tables, TensorBoard curves).
- ``statistics``: entity counts, P/R/F1 from counts, the paired bootstrap and t-test.
- ``plots``: the one matplotlib setup and every figure of the benchmark reports.
- ``tables``: benchmark and sweep tables, their markdown, and ``write_report``.
- ``analyze``: failure analysis of one run's predictions, or of two runs against each other.
"""
