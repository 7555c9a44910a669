"""Statistics over the results table, and the published results they are compared with.

The layer below the reports and the validator: it reads rows (or a DataFrame of them) and
never runs anything. ``comparison``: best per run, paired tests and effect sizes across methods;
``paper_targets``: the published operating points (with their sources); ``reproduction``:
trials matched to those points. :mod:`multi_agent_pruning.validation` re-exports them for the
API reference's imports.
"""
