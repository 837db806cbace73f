"""What several commands share: the model and data arguments, loading them, printing."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lossland.analysis import layer_lines, measure_lines, robustness_lines
from lossland.cli._args import flag
from lossland.cli._output import say, shown
from lossland.core import import_object, is_import_path, memory_text
from lossland.engine import (
    PRESETS,
    Evaluator,
    resolve_evaluator,
    select_samples,
    subset,
    user_failure,
)
from lossland.errors import LosslandError, first_line, render
from lossland.io import MEMORY_ATTR, Checkpoint, ModelSpec, Surface
from lossland.zoo import DATASETS, REGISTRY, Activation, Split, load_dataset, load_model, model_spec


@dataclass(kw_only=True)
class DataArgs:
    data_dir: Path | None = flag(
        None, doc="folder holding the Fashion-MNIST IDX files (else $LOSSLAND_DATA, else the cache)"
    )


@dataclass(kw_only=True)
class ModelArgs:
    model: str = flag(
        "small",
        doc="model name (small, vgg, resnet56, resnet56_noshort) or a user factory as "
        "package.module:factory",
    )
    width: float | None = flag(
        None,
        doc="width multiplier of registry models that have one (vgg --width 0.25); "
        "default: the model's",
    )
    activation: Activation | None = flag(
        None, doc="activation of registry models that have one (default: the model's)"
    )
    model_arg: list[str] = flag(
        [], doc="KEY=VALUE keyword for a user model factory (JSON values)", repeat=True
    )

    def spec(self) -> ModelSpec:
        """Registry models take --width/--activation where their factory has them (unset: the
        model's default, recorded in the spec; set for a model without one: an error); a user
        factory gets only its --model-arg keywords. An explicit --model-arg wins."""
        options = parse_model_args(self.model_arg)
        if self.model in REGISTRY:
            options = {"width": self.width, "activation": self.activation, **options}
        return model_spec(self.model, **options)


@dataclass(kw_only=True)
class CheckpointModelArgs(ModelArgs):
    """Model arguments of commands that load a checkpoint: the model only when it is not named."""

    model: str | None = flag(  # type: ignore[assignment]
        None,
        doc="model when the checkpoint does not name it: a registry name or package.module:factory",
    )

    def given(self) -> ModelSpec | None:
        """The model the user named (None: the checkpoint's own, when it may be built)."""
        return self.spec() if self.model is not None else None

    def load(self, checkpoint: Path) -> tuple[nn.Module, Checkpoint]:
        return load_model(checkpoint, spec=self.given())


@dataclass(kw_only=True)
class SampleArgs(DataArgs):
    data: str = flag(
        "fashion-mnist",
        doc="evaluation data: fashion-mnist, cifar10, or a user factory package.module:factory "
        "returning an (inputs, targets) pair, a Dataset or a DataLoader (the current folder is "
        "importable)",
    )
    data_arg: list[str] = flag(
        [], doc="KEY=VALUE keyword for a user data factory (JSON values)", repeat=True
    )
    split: Split = flag("train", doc="data split to evaluate on (built-in data sets)")
    samples: str | None = flag(
        None,
        doc="a seeded subset of N samples, or 'all' (default: 1024 of a built-in data set, "
        "all of a user's)",
    )
    preset: str | None = flag(
        None,
        doc="evaluator for a model family: causal_lm, sequence_classification, "
        "image_classification, seq2seq_lm, token_classification, regression, own_loss",
    )
    evaluator: str | None = flag(
        None,
        doc="your evaluator as package.module:name: a lossland Evaluator, or a function of no "
        "arguments returning one (e.g. a token-weighted loss)",
    )
    forward: str | None = flag(
        None, doc="forward as package.module:function(model, batch) returning the output"
    )
    loss: str | None = flag(None, doc="loss as package.module:function(logits, targets)")

    def load_data(self, seed: int) -> Any:
        """The evaluation data: a built-in split's seeded subset, or the user factory's data."""
        if is_import_path(self.data):
            data = _call_factory(self.data, self.data_arg, split=self.split)
            return (
                data if self.samples in (None, "all") else subset(data, _count(self.samples), seed)
            )
        if self.data_arg:
            raise LosslandError("--data-arg is for a user data factory: give --data pkg.mod:fn")
        if self.data not in DATASETS:
            raise LosslandError(
                f"unknown --data {self.data!r}: choose one of {', '.join(DATASETS)} "
                "or give package.module:factory"
            )
        images, labels = load_dataset(self.data, self.split, data_dir=self.data_dir)
        samples = "1024" if self.samples is None else self.samples
        return select_samples(images, labels, samples, seed, split=self.split)

    def known_samples(self) -> int | None:
        """The samples per evaluation as far as the flags tell, before the data is read (None:
        only the data knows: --samples all, or a user factory's data without --samples)."""
        if self.samples is None:
            return None if is_import_path(self.data) else 1024
        return int(self.samples) if self.samples.isdigit() else None

    def make_evaluator(self) -> Evaluator | None:
        """The evaluator the flags ask for (None: the default cross-entropy)."""
        if self.evaluator is not None:
            if self.preset is not None or self.forward is not None or self.loss is not None:
                raise LosslandError(
                    "--evaluator sets forward and loss: drop --preset/--forward/--loss"
                )
            return imported_evaluator(self.evaluator)
        if self.preset is not None:
            if self.forward is not None or self.loss is not None:
                raise LosslandError("--preset sets forward and loss: drop --forward/--loss")
            if self.preset not in PRESETS:
                raise LosslandError(
                    f"unknown --preset {self.preset!r}: choose one of {', '.join(PRESETS)}"
                )
            return PRESETS[self.preset]()
        base = resolve_evaluator(None, self.loss)
        if self.forward is None:
            return base
        forward = import_object(self.forward, what="forward")
        if not callable(forward):
            raise LosslandError(f"--forward {self.forward!r} is not callable")
        return replace(base, forward=forward, name=f"{base.name}+{self.forward}")


def imported_evaluator(path: str) -> Evaluator:
    """The Evaluator at ``path`` (package.module:name), or what a function there returns."""
    found = import_object(path, what="evaluator")
    if not isinstance(found, Evaluator) and callable(found):
        try:
            found = found()
        except TypeError as exc:
            raise LosslandError(
                f"--evaluator {path!r} could not be called without arguments ({exc}): point "
                "to an Evaluator or a function of no arguments returning one"
            ) from None
    if not isinstance(found, Evaluator):
        raise LosslandError(
            f"--evaluator {path!r} is a {type(found).__name__}, not a lossland Evaluator: "
            "build one with lossland.Evaluator(forward=..., loss=...)"
        )
    return found


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise LosslandError(f"--samples must be a number or 'all', got {text!r}") from None
    if value < 1:
        raise LosslandError(f"--samples must be at least 1, got {value}")
    return value


def _call_factory(path: str, items: list[str], *, split: str) -> Any:
    """``factory(**data_args)``, with ``split=`` too when the factory takes one."""
    factory = import_object(path, what="data factory")
    if not callable(factory):
        raise LosslandError(f"--data {path!r} is not callable: point to a function")
    options = parse_model_args(items, flag="--data-arg")
    try:
        if "split" in inspect.signature(factory).parameters and "split" not in options:
            options["split"] = split
    except (TypeError, ValueError):
        pass  # no signature (a builtin): call it with the given keywords only
    try:
        return factory(**options)
    except TypeError as exc:
        raise LosslandError(f"cannot call the data factory {path}: {first_line(exc)}") from None
    except LosslandError:
        raise
    except Exception as exc:  # the user's factory failed: its own words, on one line
        raise user_failure(
            exc,
            who=f"the data factory {path!r}",
            where="while building the data",
            fix="fix the factory or its --data-arg options",
        ) from exc


def parse_model_args(items: list[str], *, flag: str = "--model-arg") -> dict[str, Any]:
    """``KEY=VALUE`` pairs with JSON values (bare words stay strings)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise LosslandError(f"malformed {flag} {item!r}: write KEY=VALUE, e.g. hidden=128")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def note(message: str) -> None:
    """A line on stderr for the user (progress of long steps, notes)."""
    say(message, err=True, flush=True)


def surface_summary(result: Surface, out: Path | None, seconds: float) -> str:
    """What a finished surface command prints: size, speed, minimum, centre, sharpness."""
    ax, ay, _ = result.argmin()
    where = f"x={ax:g}" if ay is None else f"x={ax:g}, y={ay:g}"
    finite = result.loss[result.done & np.isfinite(result.loss)]
    evaluated = int(result.evaluated.sum())
    computed = result.attrs.get("points_computed", evaluated)
    if computed == 0:
        return f"{shown(out or 'the surface')} is complete: nothing to compute"
    rate = computed / max(seconds, 1e-9)
    size = "x".join(str(s) for s in result.shape)
    refined = "" if result.interpolated is None else f", {evaluated} points evaluated"
    lines = [f"{size} surface in {seconds:.1f} s ({rate:.1f} points/s{refined})"]
    lines[0] += f" → {shown(out)}" if out else ""
    if finite.size:
        lines.append(f"loss min {finite.min():.4g} at ({where}), max {finite.max():.4g}")
    values = result.values()
    holes = values.holes()
    if holes:  # evaluated, not a number: distinct from not evaluated
        lines.append(f"done {values.counts()}; non-finite losses: {holes}")
    center = result.value_at_origin()
    if center is not None and math.isfinite(center):
        lines.append(f"loss at the centre {center:.4g}")
    check = result.attrs.get("precision_check")
    if isinstance(check, dict) and "max_sem_ratio" in check:
        text = (
            f"bf16 vs fp32 at {len(check.get('points', []))} points spread over the grid: max "
            f"|Δ| {check['max_sem_ratio']:.3g} standard errors, relative median "
            f"{100 * check['median_relative']:.3g} %"
        )
        if "max_relative" in check and "confidence" in check:
            text += (
                f", max {100 * check['max_relative']:.3g} % (above the grid's "
                f"{100 * check['quantile']:.0f}th percentile with {check['confidence']:.0%} "
                "confidence)"
            )
        lines.append(text)
    lines += measure_lines(result)  # sharpness, eigenvalues, barrier
    lines += seed_lines(result)
    lines += layer_lines(result)  # a stack of layers: a line per block
    memory = memory_text(result.attrs.get(MEMORY_ATTR))
    if memory is not None:
        lines.append(f"memory: {memory}")
    return render("\n".join(lines), lambda name: "--" + name.replace("_", "-"))


def seed_lines(surface: Surface) -> list[str]:
    """How much a stacked surface depends on its direction seeds (see lossland.analysis)."""
    summary = surface.attrs.get("robustness")
    if surface.stack is None or not isinstance(summary, dict):
        return []
    cosines = surface.attrs.get("direction_cosines")
    return robustness_lines(summary, cosines if isinstance(cosines, dict) else None)
