"""The one import of the pages (``from pages import _shared as sh``): page basics, models, images and
parameter widgets, each kept in a module of its own concern:

* :mod:`pages._ui`: paths, the entry point, errors, progress, tables and downloads;
* :mod:`pages._model_ui`: models loaded once per process, the model picker, the models table;
* :mod:`pages._image_ui`: samples, uploads, image and prediction caches;
* :mod:`pages._widgets`: parameter widgets generated from the schema, settings files and reset;
* :mod:`pages._settings`: the session's settings store they all read and write;
* :mod:`pages._tabstate`: that store kept for the tab through a reload or an app restart.

Not a page (``st.navigation`` lists the pages explicitly). Compute stays in :mod:`cellcount`.
"""

from pages import _tabstate, _ui
from pages._image_ui import (  # noqa: F401  (re-exported for the pages)
    Source,
    backend_in_use,
    backend_ui,
    channel_note,
    digest_of,
    evaluate_cached,
    file_metadata,
    for_image,
    has_planes,
    image_caption,
    image_note,
    n_planes,
    pixel_size_note,
    plane_source,
    plane_ui,
    predict_cached,
    predict_set_cached,
    predict_source,
    prediction_key,
    predictions_made,
    read_image_cached,
    remember_plane,
    requested_backend,
    sample_frame,
    sample_label,
    sample_names,
    sample_pairs,
    sample_source,
    sample_truths,
    set_digest,
    set_plane_choice,
    shared_plane_widget,
    stack_plane_ui,
    thumbnail_cached,
    truth_digest,
    upload_source,
    with_file_pixel_size,
)
from pages._model_ui import (  # noqa: F401  (re-exported for the pages)
    finetune_board,
    finetune_owner,
    finetune_seen,
    finetune_watch,
    get_model,
    get_size_model,
    model_gone_now,
    model_label,
    model_picker,
    model_version,
    models_frame,
    models_frame_columns,
    pick_model,
    prediction_version,
    trained_on_names,
)
from pages._ui import (  # noqa: F401  (re-exported for the pages)
    CACHE_TTL_S,
    DELETED_WHERE,
    DENSITY_PEAKS_NOTE,
    ELSEWHERE,
    ENTRY_FLAG,
    GOTO_KEY,
    IMAGE_TYPES,
    MICROSCOPE_HELP,
    MICROSCOPE_TYPES,
    PERSIST,
    STARTED_ELSEWHERE,
    STOPPED_ELSEWHERE,
    TOO_LARGE_HINT,
    csv_bytes,
    dataframe,
    download_button,
    fixed,
    flag_column,
    flag_words,
    kept_uploads,
    number_formats,
    pick_one,
    preset_kept_uploads,
    progress_callback,
    show_error,
    show_messages,
    stem,
    stop_elsewhere,
    uploaders_empty,
)
from pages._widgets import (  # noqa: F401  (re-exported for the pages)
    apply_settings,
    current_input,
    input_ui,
    params_ui,
    probability_stats,
    reset_models_button,
    resolve,
    settings_json,
    settings_panel,
    settings_status,
    settings_upload,
    use_local_settings,
)


def require_entry_point(page: str) -> None:
    """:func:`pages._ui.require_entry_point` (call first thing in each page), after saving what the widgets'
    callbacks changed before this run for the tab (:mod:`pages._tabstate`; the entry point saves after the page)."""
    _tabstate.save()
    _ui.require_entry_point(page)
