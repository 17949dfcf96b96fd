"""The data: pictures with class labels and object boxes, as the model is trained and scored on.

Loading one image safely, the readers (CUB-200-2011, wsolevaluation metadata, CSV), the
transforms that carry the boxes, the synthetic teaching set, and the feature cache (a frozen
backbone front run once per training run). May import ``acol.core`` only.
"""
