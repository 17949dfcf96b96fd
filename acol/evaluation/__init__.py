"""Evaluation: what a trained model says, measured and explained.

The wsolevaluation metrics and ``python -m acol evaluate`` (inference, scoring, the report,
shipping), running a checkpoint on one picture as the page does (``Explainer``, ``Explanation``
and their words), and whether a picture tells ACoL's story. May import ``acol.data`` and
``acol.core``.
"""
