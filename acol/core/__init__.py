"""The core: ACoL itself and what stores it.

The model and its classifier heads, the backbones, the maps and boxes, checkpoints, the device
choice, and the training-history file (its format, loading, checks and replay). The lowest
layer: it imports nothing else of acol.
"""
