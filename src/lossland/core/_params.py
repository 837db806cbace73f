"""Which tensors move: the one function that turns a ``params`` spec into the moving names.

A spec is ``None`` (every tensor that can move), ``"trainable"`` (the tensors with
``requires_grad``: a PEFT/LoRA adapter, a partly frozen model), glob patterns over the names
(``fnmatch``; one string or several; ``"!pattern"`` excludes, and excludes alone start from
every tensor), or a callable ``(name, tensor) -> bool``. Every verb that moves a model
(surfaces, seeds, lines and planes between models, PCA, the Hessian) resolves its spec here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import Union

from torch import Tensor

from lossland.core._dtypes import moves
from lossland.errors import LosslandError, arg, first_line

# ``Union`` and not ``|``: the alias is evaluated at import, where ``str | Callable[...]`` is not
# a type.
Params = Union[str, Sequence[str], Callable[[str, Tensor], bool]]  # noqa: UP007
TRAINABLE = "trainable"


def select_params(params: Params | None, tensors: Iterable[tuple[str, Tensor]]) -> list[str] | None:
    """The names, in ``tensors``' order, of the tensors ``params`` chooses among those that can
    move (:func:`lossland.core.moves`); None for "every tensor" (no spec). A spec that chooses
    none of them is refused in one line naming what the model holds and the fix."""
    if params is None or (not callable(params) and len(params) == 0):
        return None
    named = [(n, t) for n, t in tensors if moves(n, t.dtype)]
    chosen = [n for n, t in named if _chooses(params, n, t)]
    if chosen:
        return chosen
    examples = ", ".join(n for n, _ in named[:3]) + (", …" if len(named) > 3 else "")
    if params == TRAINABLE:
        problem = "no floating-point tensor of the model requires grad"
    else:
        problem = f"{arg('params')} {_shown(params)} match none of the model's {len(named)} tensors"
    raise LosslandError(
        f"{problem} ({examples}): give glob patterns over these names (a leading ! excludes), "
        f"{TRAINABLE!r} for the tensors that require grad, or drop {arg('params')}"
    )


def _chooses(params: Params, name: str, tensor: Tensor) -> bool:
    if callable(params):
        try:
            return bool(params(name, tensor))
        except Exception as exc:
            raise LosslandError(
                f"the {arg('params')} function raised {type(exc).__name__} on {name} "
                f"({first_line(exc)}): fix it (it takes a name and a tensor, returns a bool)"
            ) from exc
    if params == TRAINABLE:
        return tensor.requires_grad
    patterns = [params] if isinstance(params, str) else list(params)
    if not all(isinstance(p, str) and p.lstrip("!") for p in patterns):
        raise LosslandError(
            f"{arg('params')} takes glob patterns (non-empty text), {TRAINABLE!r} or a function "
            f"(name, tensor) -> bool, got {_shown(params)}"
        )
    keep = [p for p in patterns if not p.startswith("!")]
    drop = [p[1:] for p in patterns if p.startswith("!")]
    included = not keep or any(fnmatch.fnmatchcase(name, p) for p in keep)
    return included and not any(fnmatch.fnmatchcase(name, p) for p in drop)


def _shown(params: Params) -> str:
    if callable(params):
        return f"function {getattr(params, '__name__', type(params).__name__)}"
    return repr(params if isinstance(params, str) else list(params))
