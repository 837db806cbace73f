"""Analysis: numbers measured on a computed surface, never drawn and never evaluated on a
model. Topology (basins, merge tree), sharpness and barrier measures, robustness across seeds,
descent on the interpolated surface, and the text summary of a surface.

It imports core and io; run, show, cli and the public API import it.
"""

from lossland.analysis._compare import (
    Profile,
    comparison,
    comparison_attrs,
    comparison_lines,
    profile_of,
)
from lossland.analysis._descent import (
    DEFAULT_LR,
    FLAGS,
    HYPER_DEFAULTS,
    HYPER_RANGES,
    OPTIMIZERS,
    OptimizerName,
    descend,
    descend_all,
    edge_point,
    parse_start,
    resolve_hyper,
)
from lossland.analysis._interpolant import Grid, Interpolant, Interpolation, surface_grid
from lossland.analysis._layers import layer_lines
from lossland.analysis._measures import (
    Barrier,
    Sharpness,
    barrier,
    from_text,
    interpolated_among,
    measure_lines,
    measure_points,
    measures,
    node_losses,
    sharpness,
    with_measures,
)
from lossland.analysis._recording_summary import describe_recording
from lossland.analysis._robustness import (
    mean_and_spread,
    robustness,
    robustness_lines,
    seed_logs,
    seed_stack,
    seed_surface,
)
from lossland.analysis._summary import describe
from lossland.analysis._topology import basin_areas, global_basin, most_persistent, topology
from lossland.analysis._topology_schema import BasinArea, Merge, Minimum, Topology
from lossland.analysis._topology_surface import (
    BARRIER_SE_ATTR,
    paired_errors,
    surface_graph,
    surface_topology,
    sweep_stride,
)
from lossland.analysis._topology_text import summary_lines, topology_lines

__all__ = [
    "BARRIER_SE_ATTR",
    "DEFAULT_LR",
    "FLAGS",
    "HYPER_DEFAULTS",
    "HYPER_RANGES",
    "OPTIMIZERS",
    "Barrier",
    "BasinArea",
    "Grid",
    "Interpolant",
    "Interpolation",
    "Merge",
    "Minimum",
    "OptimizerName",
    "Profile",
    "Sharpness",
    "Topology",
    "barrier",
    "basin_areas",
    "comparison",
    "comparison_attrs",
    "comparison_lines",
    "descend",
    "descend_all",
    "describe",
    "describe_recording",
    "edge_point",
    "from_text",
    "global_basin",
    "interpolated_among",
    "layer_lines",
    "mean_and_spread",
    "measure_lines",
    "measure_points",
    "measures",
    "most_persistent",
    "node_losses",
    "paired_errors",
    "parse_start",
    "profile_of",
    "resolve_hyper",
    "robustness",
    "robustness_lines",
    "seed_logs",
    "seed_stack",
    "seed_surface",
    "sharpness",
    "summary_lines",
    "surface_graph",
    "surface_grid",
    "surface_topology",
    "sweep_stride",
    "topology",
    "topology_lines",
    "with_measures",
]


def __dir__() -> list[str]:
    return list(__all__)
