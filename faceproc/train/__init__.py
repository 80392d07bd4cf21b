"""Training of both variants through the crop cache (one module per concern: config, data, augment,
features, batchnorm, callbacks, fit).

frozen:   the backbone is frozen and runs in inference mode, so its pooled features are computed once
          (for each crop and its mirror image) and the heads are trained on them; the heads are then
          copied into the full model. Same model and loss as training end to end, minutes instead of hours.
unfrozen: optional warm start (heads, incl. the BN, trained on cached features first), then the whole
          network is fine-tuned on augmented crops with checkpoints every epoch, a CSV log, early
          stopping on validation loss and resume after interruption.
"""

from .augment import CropSequence, augment_batch, augmented_copy
from .batchnorm import batchnorm_layers, recalibrate_batchnorm
from .config import TrainConfig
from .data import prepare_data, read_records, training_policy
from .features import _cached_features, backbone_features, copy_head_weights, fit_heads
from .fit import fit, train
from ..agegender.architecture import preprocess

__all__ = ["CropSequence", "TrainConfig", "augment_batch", "augmented_copy", "backbone_features", "batchnorm_layers",
           "copy_head_weights", "fit", "fit_heads", "prepare_data", "preprocess", "read_records", "recalibrate_batchnorm",
           "train", "training_policy", "_cached_features"]
