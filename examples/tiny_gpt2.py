"""A tiny GPT-2 on synthetic text, for lossland's command line and Python API.

    python tiny_gpt2.py                      # trains, writes gpt2.safetensors and gpt2_run/
    lossland surface gpt2.safetensors --model tiny_gpt2:make_model \\
        --data tiny_gpt2:make_loader --preset causal_lm --x -0.5:0.5:11 --y -0.5:0.5:11
    lossland surface gpt2.safetensors --model tiny_gpt2:make_model \\
        --data tiny_gpt2:make_loader --preset causal_lm --trajectory gpt2_run
    lossland hessian gpt2.safetensors --model tiny_gpt2:make_model \\
        --data tiny_gpt2:make_loader --preset causal_lm --k 3 --probes 0

(The current folder is importable, so ``tiny_gpt2:make_model`` is this file.)
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from torch.utils.data import DataLoader

import lossland

VOCAB, LENGTH = 97, 24


def make_model(layers: int = 2, width: int = 64) -> torch.nn.Module:
    """A GPT-2 with random weights from a small config (nothing is downloaded)."""
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=LENGTH,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def make_loader(split: str = "train", sequences: int = 64, batch_size: int = 16) -> DataLoader:
    """Padded dict batches as a tokenizer and collator make them: input_ids, attention_mask,
    labels with -100 on the padding. The "text" counts upwards mod VOCAB from a random start,
    so the model can learn it."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    starts = torch.randint(0, VOCAB, (sequences, 1), generator=g)
    ids = (starts + torch.arange(LENGTH)) % VOCAB
    lengths = torch.randint(LENGTH // 2, LENGTH + 1, (sequences,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    rows = [
        {"input_ids": i * m, "attention_mask": m, "labels": i.masked_fill(m == 0, -100)}
        for i, m in zip(ids, mask, strict=True)
    ]
    return DataLoader(rows, batch_size=batch_size)


def train(steps: int = 40, out: str = "gpt2.safetensors", run: str = "gpt2_run") -> None:
    """A few Adam steps, saving a checkpoint every 5 steps (a trajectory for a PCA plane)."""
    torch.manual_seed(0)
    model = make_model()
    spec = lossland.ModelSpec("tiny_gpt2:make_model")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = list(make_loader())
    Path(run).mkdir(exist_ok=True)
    for step in range(steps + 1):
        if step % 5 == 0:
            lossland.save_checkpoint(model, f"{run}/step_{step:07d}.safetensors", spec=spec)
        if step == steps:
            break
        model.train()
        loss = model(**batches[step % len(batches)]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lossland.save_checkpoint(model, out, spec=spec)


if __name__ == "__main__":
    train()
