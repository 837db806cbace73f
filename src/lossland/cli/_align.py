"""``lossland align A B -o B_aligned.safetensors``: B with its hidden units permuted to match A
(it computes B's function), saved with B's metadata and a record of the alignment."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lossland.cli._args import Command, flag
from lossland.cli._common import CheckpointModelArgs, SampleArgs
from lossland.cli._output import say
from lossland.compare import Alignment, AlignOptions, align
from lossland.errors import LosslandError, arg
from lossland.io import check_output, save_checkpoint


@dataclass(kw_only=True)
class AlignArgs(CheckpointModelArgs, SampleArgs):
    """Permute B's hidden units to match A's (weight matching), saved as a checkpoint of B.

    The permutation groups come from the model's graph; the aligned checkpoint computes B's
    function, so the line from A to it (lossland interpolate A B_aligned) shows the barrier
    that is not a relabelling of units. --method activations matches units by the correlation
    of their activations on --data instead.
    """

    checkpoints: list[Path] = flag(
        [], doc="A (the reference) and B (the model to permute)", positional=True, repeat=True
    )
    out: Path | None = flag(
        None, short="-o", doc="aligned checkpoint (default: <B>_aligned.safetensors beside B)"
    )
    overwrite: bool = flag(False, doc="replace an existing aligned checkpoint")


def run(args: AlignArgs, options: AlignOptions) -> int:
    if len(args.checkpoints) != 2:
        raise LosslandError(
            "align takes two checkpoints, A (the reference) and B (the model to permute), got "
            f"{len(args.checkpoints)}"
        )
    path_a, path_b = args.checkpoints
    out = args.out or path_b.with_name(f"{path_b.stem}_aligned.safetensors")
    check_output(out, overwrite=args.overwrite, inputs=[path_a, path_b])
    model_a, checkpoint_a = args.load(path_a)
    model_b, checkpoint_b = args.load(path_b)
    activations = options.method == "activations"
    if not activations:
        _no_data_flags(args)
    result = align(
        model_a,
        model_b,
        data=args.load_data(options.seed) if activations else None,
        evaluator=args.make_evaluator() if activations else None,
        options=options,
    )
    metadata = {
        k: v
        for k, v in checkpoint_b.metadata.items()
        if k not in ("lossland_version", "torch_version")  # this file's, written now
    }
    metadata["alignment"] = {
        **result.record(),
        "reference": str(path_a),
        "reference_sha256": checkpoint_a.sha256,
        "source": str(path_b),
        "source_sha256": checkpoint_b.sha256,
    }
    spec = checkpoint_b.model_spec or args.given()
    metadata.pop("model", None)
    save_checkpoint(result.model, out, spec=spec, overwrite=args.overwrite, **metadata)
    say(summary(result, out))
    return 0


def _no_data_flags(args: AlignArgs) -> None:
    """Weight matching reads no data: a data flag given with it is a mistake, not a no-op."""
    defaults = SampleArgs()
    for f in dataclasses.fields(SampleArgs):
        if getattr(args, f.name) != getattr(defaults, f.name):
            raise LosslandError(
                f"{arg(f.name)} is read by activation matching only: drop it, or pass "
                f"{arg('method')} activations"
            )


def summary(result: Alignment, out: Path) -> str:
    groups = result.permutation.groups
    units = sum(g.units for g in groups)
    if result.method == "weights":
        how = f"weight matching, {result.iterations} passes"
        objective = "Σ⟨θ_A, π(θ_B)⟩"
    else:
        how, objective = "activation matching", "mean correlation of matched units"
    lines = [
        f"aligned B to A by {how}: {len(groups)} groups, {units:,} units → {out}",
        f"{objective}: {result.objective_before:.6g} before, {result.objective_after:.6g} after",
    ]
    if result.untraced:
        names = [repr(m) if m else "the model" for m in result.untraced]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"left in place: the inputs and outputs of {shown} (not traceable as a whole)")
    return "\n".join(lines)


COMMAND = Command("align", (AlignArgs, AlignOptions), run)
