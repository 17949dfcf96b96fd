"""Training: ``python -m acol train`` and ``python -m acol train-everyday``.

The run's config and flags, the training loop, its run folder (checkpoint, resumable state, log,
training history recorded each epoch) and the everyday model. May import ``acol.evaluation``
(each epoch validates), ``acol.data`` and ``acol.core``.
"""
