"""Pictures of results: RGB arrays and plotly figures, never streamlit, so notebooks, scripts and the app
share them. Images are (row, col) = (H, W[, C]).

* :mod:`~cellcount.viz.arrays`: outline overlays, thumbnails, ground-truth outlines as RGB arrays;
* :mod:`~cellcount.viz.viewer`: the Count page's pre-rendered picture (colours, zoom, PNG/JPEG);
* :mod:`~cellcount.viz.figures`: interactive image figures (outlines, probability and density maps, points);
* :mod:`~cellcount.viz.charts`: charts of counts, errors, timings and training.
"""

from .arrays import (
    GROUND_TRUTH_COLOR,
    OUTLINE_COLORS,
    OUTLINE_COLORS_BRIGHT,
    RGB,
    UNMATCHED_COLOR,
    boundaries,
    ground_truth_overlay,
    mark_objects,
    outline_legend,
    outline_overlay,
    thumbnail,
    to_rgb,
    unmatched_color,
)
from .charts import (
    ERROR_SORTS,
    agreement_scatter,
    area_histogram,
    count_histogram,
    error_bars,
    error_histogram,
    model_times_figure,
    pred_vs_true_scatter,
    probability_histogram_figure,
    stage_times_figure,
    training_curve,
)
from .figures import (
    density_figure,
    image_figure,
    overlay_figure,
    points_figure,
    probability_figure,
)
from .viewer import (
    AUTO_CANDIDATES,
    MERGE_COLOR,
    OUTLINE_CANDIDATES,
    ZOOM_VIEW_PX,
    contrast_color,
    display_image,
    encode_jpeg,
    encode_png,
    histogram_strip,
    object_colors,
    points_overlay,
    render_outlines,
    zoom_view,
)

__all__ = [
    "AUTO_CANDIDATES",
    "ERROR_SORTS",
    "MERGE_COLOR",
    "OUTLINE_CANDIDATES",
    "GROUND_TRUTH_COLOR",
    "OUTLINE_COLORS",
    "OUTLINE_COLORS_BRIGHT",
    "RGB",
    "UNMATCHED_COLOR",
    "mark_objects",
    "unmatched_color",
    "agreement_scatter",
    "area_histogram",
    "boundaries",
    "contrast_color",
    "count_histogram",
    "density_figure",
    "display_image",
    "encode_jpeg",
    "encode_png",
    "error_bars",
    "error_histogram",
    "ground_truth_overlay",
    "histogram_strip",
    "image_figure",
    "model_times_figure",
    "object_colors",
    "outline_legend",
    "outline_overlay",
    "overlay_figure",
    "points_figure",
    "points_overlay",
    "pred_vs_true_scatter",
    "probability_figure",
    "probability_histogram_figure",
    "render_outlines",
    "stage_times_figure",
    "thumbnail",
    "to_rgb",
    "training_curve",
    "ZOOM_VIEW_PX",
    "zoom_view",
]
