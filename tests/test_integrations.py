"""The recorder inside Lightning and the Hugging Face Trainer, and its TensorBoard and W&B
loggers, with the real libraries on tiny models (nothing downloaded; W&B offline)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossland
from helpers import assert_one_line, torch_threads
from lossland.errors import LosslandError
from lossland.io import Recording

lightning = pytest.importorskip("lightning.pytorch")
pytest.importorskip("tensorboard")


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)


class Tiny(lightning.LightningModule):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def events(folder: Path) -> object:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    found.Reload()
    return found


def fit(
    tmp_path: Path,
    callback: object,
    steps: int,
    *,
    checkpoints: object = None,
    resume: str | None = None,
) -> None:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data()), batch_size=8)
    trainer = lightning.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=checkpoints is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback] if checkpoints is None else [callback, checkpoints],
    )
    with warnings.catch_warnings():  # Lightning's advice on workers and on small data sets
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*num_workers.*")
        trainer.fit(Tiny(), loader, ckpt_path=resume)


def test_lightning_callback_records_and_logs_to_tensorboard(tmp_path):
    from lossland.integrations import LightningCallback, TensorBoardLogger

    out, logs = tmp_path / "rec.h5", tmp_path / "tb"
    callback = LightningCallback(
        data(), out=out, every=2, budget=0, trace_probes=2, loggers=[TensorBoardLogger(logs)]
    )
    fit(tmp_path, callback, 6)
    recording = Recording.load(out)
    assert recording.steps.tolist() == [0, 2, 4, 6]
    assert np.allclose(recording.scalars["lr"], 0.3)
    assert np.isfinite(recording.scalars["lambda_max"]).all()
    found = events(logs)
    for name in ("lambda_max", "trace", "barrier", "rise_mean", "centre_loss"):
        scalars = found.Scalars(f"lossland/{name}")
        assert [e.step for e in scalars] == [0, 2, 4, 6], name
        if name in ("lambda_max", "trace"):
            assert [e.value for e in scalars] == pytest.approx(recording.scalars[name].tolist())
    images = found.Images("lossland/slice")
    assert [e.step for e in images] == [0, 2, 4, 6]
    assert images[0].width > 50 and images[0].height > 50


def test_a_second_fit_from_step_0_on_the_same_file_records_it_again(tmp_path):
    from lossland.integrations import LightningCallback

    out = tmp_path / "rec.h5"
    fit(tmp_path, LightningCallback(data(), out=out, every=2, budget=0), 4)
    first = Recording.load(out)
    fit(tmp_path, LightningCallback(data(), out=out, every=2, budget=0), 4)
    again = Recording.load(out)  # a fresh fit from step 0 replays: the same file
    np.testing.assert_array_equal(again.steps, first.steps)
    np.testing.assert_array_equal(again.loss, first.loss)


def test_hugging_face_trainer_callback_records_a_tiny_gpt2(tmp_path):
    transformers = pytest.importorskip("transformers")
    from lossland.integrations import TrainerCallback

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=31, n_positions=8, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config)
    ids = (torch.randint(0, 31, (16, 1)) + torch.arange(8)) % 31
    rows = [{"input_ids": i, "attention_mask": torch.ones(8, dtype=torch.long), "labels": i}
            for i in ids]  # fmt: skip
    loader = torch.utils.data.DataLoader(rows, batch_size=16)
    callback = TrainerCallback(
        loader,
        out=tmp_path / "rec.h5",
        evaluator=lossland.presets.causal_lm(),
        every=2,
        x="-1:1:3",
        hessian_iterations=3,
        budget=0,
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="transformers")
        trainer.train()
    recording = Recording.load(tmp_path / "rec.h5")
    assert recording.steps.tolist() == [0, 2, 4]
    lr = recording.scalars["lr"]
    assert lr[0] == pytest.approx(1e-2) and lr[1] > lr[2]  # the linear schedule, as it ran
    assert np.isfinite(recording.scalars["lambda_max"]).all()
    assert recording.loss.shape == (3, 3)


def test_wandb_logger_offline_writes_the_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lossland.integrations import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="wandb")
        run = wandb.init(project="lossland-test", dir=str(tmp_path), mode="offline")
        try:
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
            rec = lossland.Recorder(
                model, data(), out=tmp_path / "rec.h5", every=1, budget=0,
                loggers=[WandbLogger(run)],
            )  # fmt: skip
            for step in range(3):
                rec.step(step)
            rec.close()
        finally:
            run.finish()
    folders = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 1
    assert list(folders[0].glob("run-*.wandb"))
    images = list((folders[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 3  # one slice per record


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [("WandbLogger", "wandb", "wandb"), ("TensorBoardLogger", "tensorboard", "tensorboard")],
)
def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch, name, module, extra):
    import lossland.integrations as integrations

    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(LosslandError, match=rf"lossland\[{extra}\]") as caught:
        getattr(integrations, name)()
    assert_one_line(str(caught.value))


def test_a_lightning_fit_resumed_from_its_checkpoint_records_the_uninterrupted_file(tmp_path):
    from lossland.integrations import LightningCallback

    whole = tmp_path / "whole.h5"
    fit(tmp_path / "a", LightningCallback(data(), out=whole, every=2, budget=0), 8)
    out = tmp_path / "resumed.h5"
    saver = lightning.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1
    )
    fit(tmp_path / "b", LightningCallback(data(), out=out, every=2, budget=0), 7, checkpoints=saver)
    assert Recording.load(out).steps.tolist() == [0, 2, 4, 6]
    # at an epoch's end (4 batches of 8): a plain DataLoader resumes at an epoch's start
    last = sorted((tmp_path / "ckpt").glob("*step=4*.ckpt"))
    assert last, list((tmp_path / "ckpt").iterdir())
    # the fit stopped after step 7; it resumes from its step-4 checkpoint: 4 and 6 are replayed
    fit(
        tmp_path / "b",
        LightningCallback(data(), out=out, every=2, budget=0),
        8,
        resume=str(last[0]),
    )
    a, b = Recording.load(out), Recording.load(whole)
    assert a.steps.tolist() == [0, 2, 4, 6, 8]
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    np.testing.assert_allclose(a.scalars["lambda_max"], b.scalars["lambda_max"], rtol=1e-5)
