"""``LightningCallback``: a :class:`lossland.Recorder` inside ``lightning.pytorch.Trainer.fit``.

The recorder is made at the start of fitting (on the global-zero process only), records the
weights it starts from at ``trainer.global_step`` (0, or the step a checkpoint resumed at, so a
resumed fit continues its recording: see :class:`lossland.Recorder`), then steps after every
training batch with the global step (optimizer steps: with gradient accumulation it records
once per optimizer step) and the first optimizer's learning rate, and closes at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossland.integrations._optional import optional
from lossland.run import Recorder

_pl = optional("lightning.pytorch", extra="lightning", what="LightningCallback")


def first_lr(optimizers: Any) -> float | None:
    """The learning rate of the first parameter group of the first optimizer, if any."""
    for optimizer in optimizers or ():
        for group in getattr(optimizer, "param_groups", ()):
            lr = group.get("lr")
            return float(lr) if isinstance(lr, (int, float)) else None
    return None


class LightningCallback(_pl.Callback):  # type: ignore[misc, name-defined]
    """Records the landscape during ``Trainer.fit``: ``data`` is the fixed evaluation set,
    ``out`` the recording file; the other keywords are :class:`lossland.Recorder`'s."""

    def __init__(self, data: Any, *, out: str | Path, **recorder: Any) -> None:
        super().__init__()
        self.data, self.out, self.keywords = data, out, recorder
        self.recorder: Recorder | None = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        self.recorder = Recorder(pl_module, self.data, out=self.out, **self.keywords)
        self.recorder.step(trainer.global_step, lr=first_lr(trainer.optimizers))

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.recorder is not None:
            self.recorder.step(trainer.global_step, lr=first_lr(trainer.optimizers))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.recorder is not None:
            self.recorder.close()
            _pl.utilities.rank_zero_info(f"lossland: {self.recorder.summary()}")
