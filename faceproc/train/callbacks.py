"""Learning-rate schedule and the wall-clock budget (a GPU lease): the epochs are planned from the second
epoch so the cosine schedule still completes."""

from __future__ import annotations

import logging
import math
import time


from .config import TrainConfig

log = logging.getLogger(__name__)


def _lr_callback(cfg: TrainConfig, base_lr: float):
    import keras

    if cfg.lr_schedule == "cosine":
        return keras.callbacks.LearningRateScheduler(
            lambda e, lr: float(base_lr * 0.5 * (1 + math.cos(math.pi * min(e, cfg.epochs) / cfg.epochs)))
        )
    if cfg.lr_schedule == "plateau":
        return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=1)
    return None


def _budget_callback(cfg: TrainConfig):
    """Cap cfg.epochs to what fits cfg.time_budget_s (measured on the second epoch of this process)."""
    import keras

    class _Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.n = time.time(), 0

        def on_epoch_begin(self, epoch, logs=None):
            self.te = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.n += 1
            if self.n == 2:
                per = time.time() - self.te
                left = cfg.time_budget_s - (time.time() - self.t0)
                fits = epoch + 1 + max(0, int(left // (per * 1.03)))
                if fits < cfg.epochs:
                    log.info("time budget %.0f s, %.1f s an epoch: %d epochs instead of %d", cfg.time_budget_s, per, fits, cfg.epochs)
                    cfg.epochs = max(fits, epoch + 1)
            if epoch + 1 >= cfg.epochs:
                self.model.stop_training = True

    return _Budget()
