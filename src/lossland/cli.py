"""The ``lossland`` command line: each command is one config dataclass and one API call.

Arguments are generated from the dataclasses in :mod:`lossland.config`; handlers only translate
a config into an API call and print a short summary. Errors a user can fix surface as a single
line ``lossland: error: ...`` with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args, get_origin

from lossland.errors import LosslandError

Handler = Callable[[Any], int | None]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argument per dataclass field: types, choices and defaults come from the field."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        tp, _ = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("repeat"):
            (item,) = get_args(tp) or (str,)
            kwargs.update(action="append", type=item, default=[])
        elif tp is bool:
            kwargs.update(action=argparse.BooleanOptionalAction, default=f.default)
        elif get_origin(tp) is Literal:
            choices = get_args(tp)
            kwargs.update(choices=choices, type=type(choices[0]))
        else:
            kwargs["type"] = tp
        if meta.get("positional"):
            if meta.get("repeat"):  # a positional list: one or more values
                kwargs.update(action="store", nargs="+")
                kwargs.pop("default")
            parser.add_argument(f.name, **kwargs)
            continue
        if f.default is not dataclasses.MISSING and not meta.get("repeat") and tp is not bool:
            kwargs["default"] = f.default
            if f.default is not None and "help" in kwargs:
                kwargs["help"] += f" (default: {f.default})"
        flags = [f"--{f.name.replace('_', '-')}"]
        if meta.get("short"):
            flags.insert(0, meta["short"])
        parser.add_argument(*flags, dest=f.name, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


# --- handlers -------------------------------------------------------------------------------------


def _train(config: Any) -> int:
    from lossland.train import train

    result = train(config)
    print(result.summary())
    return 0


def _timed_surface(compute: Callable[[Any], Any], config: Any) -> int:
    """Run a surface command and print its summary (under torchrun, rank 0 speaks for all)."""
    import time

    from lossland.distributed import is_main_process
    from lossland.landscape import summary

    started = time.perf_counter()
    result = compute(config)
    if is_main_process():
        print(summary(result, config.out, time.perf_counter() - started))
    return 0


def _surface(config: Any) -> int:
    from lossland.landscape import surface_from_config

    return _timed_surface(surface_from_config, config)


def _info(config: Any) -> int:
    from lossland.surface_file import Surface

    print(Surface.load(config.file).describe())
    return 0


def _plot(config: Any) -> int:
    from lossland.plot import plot_from_config

    for path in plot_from_config(config):
        print(path)
    return 0


def _demo(config: Any) -> int:
    from lossland.demo import demo

    print(demo(config))
    return 0


def _path(config: Any) -> int:
    from lossland.paths import paths_from_config

    paths, out = paths_from_config(config)
    for path in paths:
        print(path.summary())
    print(out)
    return 0


def _view(config: Any) -> int:
    from lossland.view import serve, view_from_config

    out = view_from_config(config)
    print(out)
    if config.serve:
        serve(out, port=config.port, open_browser=config.browser)
    return 0


def _export(config: Any) -> int:
    from lossland.export import export_from_config

    print(export_from_config(config))
    return 0


def _hessian(config: Any) -> int:
    from lossland.hessian import hessian_from_config

    print(hessian_from_config(config).summary(header=f"checkpoint {config.checkpoint}"))
    return 0


def _interpolate(config: Any) -> int:
    from lossland.special_planes import interpolate_from_config

    return _timed_surface(interpolate_from_config, config)


def commands() -> dict[str, tuple[type, Handler]]:
    from lossland import config as c

    return {
        "train": (c.TrainConfig, _train),
        "surface": (c.SurfaceConfig, _surface),
        "info": (c.InfoConfig, _info),
        "plot": (c.PlotConfig, _plot),
        "demo": (c.DemoConfig, _demo),
        "path": (c.PathConfig, _path),
        "view": (c.ViewConfig, _view),
        "export": (c.ExportConfig, _export),
        "hessian": (c.HessianConfig, _hessian),
        "interpolate": (c.InterpolateConfig, _interpolate),
    }


def build_parser() -> argparse.ArgumentParser:
    from lossland import __version__

    parser = argparse.ArgumentParser(
        prog="lossland", description="Fast neural-network loss landscapes on PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"lossland {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (cls, _) in commands().items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        add_config_arguments(sub.add_parser(name, help=doc, description=doc), cls)
    return parser


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--x -1:1:51`` → ``--x=-1:1:51``: argparse would read ``-1:1:51`` as an option."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"^-\.?\d", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    cls, handler = commands()[args.command]
    try:
        return handler(config_from_args(cls, args)) or 0
    except LosslandError as exc:
        if not getattr(exc, "quiet", False):  # quiet: another torchrun rank reported it
            print(f"lossland: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a surface run
        if not getattr(exc, "quiet", False):
            print(f"lossland: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", 2))
    except BrokenPipeError:
        return 0
