"""acol: Adversarial Complementary Learning for weakly supervised object localization."""

from .core.backbones import BACKBONES, Backbone, create_backbone, register_backbone
from .core.maps import box_from_map, box_iou, boxes_from_map, fuse_maps, normalize_maps, upsample_maps
from .core.model import ACoL, ACoLOutput, ClassifierHead, erase_features

__version__ = "0.1.0"
