"""Analysis: numbers measured on a computed surface, never drawn and never evaluated on a
model. Topology (basins, merge tree), sharpness and barrier measures, robustness across seeds,
descent on the interpolated surface.

It imports core and io; run, show, cli and the public API import it.
"""

__all__: list[str] = []


def __dir__() -> list[str]:
    return list(__all__)
