"""``TrainerCallback``: a :class:`lossland.Recorder` inside a Hugging Face ``Trainer``.

Made at ``on_train_begin`` on the main process (``state.is_world_process_zero``), it records
the starting weights at ``state.global_step`` (0, or the checkpoint's step on
``resume_from_checkpoint``), then steps at every ``on_step_end`` (optimizer steps) with the
scheduler's learning rate, and closes at ``on_train_end``. For ``*ForCausalLM`` or
``*ForSequenceClassification`` models pass the matching evaluator
(``lossland.presets.causal_lm()``, ...), as for any surface of such a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossland.integrations._optional import optional
from lossland.integrations._rates import scheduler_lr
from lossland.run import Recorder

_hf = optional("transformers", extra="hf", what="TrainerCallback")


class TrainerCallback(_hf.TrainerCallback):  # type: ignore[misc, name-defined]
    """Records the landscape during ``Trainer.train``: ``data`` is the fixed evaluation set,
    ``out`` the recording file; the other keywords are :class:`lossland.Recorder`'s."""

    def __init__(self, data: Any, *, out: str | Path, **recorder: Any) -> None:
        self.data, self.out, self.keywords = data, out, recorder
        self.recorder: Recorder | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        model = kw.get("model")
        if not state.is_world_process_zero or model is None:
            return
        self.recorder = Recorder(model, self.data, out=self.out, **self.keywords)
        self.recorder.step(state.global_step, lr=scheduler_lr(kw))

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.recorder is not None:
            self.recorder.step(state.global_step, lr=scheduler_lr(kw))

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.recorder is not None:
            self.recorder.close()
            _hf.utils.logging.get_logger("lossland").info(self.recorder.summary())
