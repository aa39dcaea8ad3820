"""The files ``count`` writes: checked before any counting, kept beside them before they are replaced, and
the label images of ``--labels-dir`` named and indexed; and a run's counts CSV as ``runs --export`` writes it
again (:func:`export_text`, :func:`not_a_table_problem`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


def same_file(a: Path, b: Path) -> bool:
    return real(a) == real(b)


SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


def replaced_counts(out: Path) -> str | None:
    """What becomes of the rows an existing ``out`` holds, which this run replaces (None: it holds none): where
    they are the last run's rows as the history keeps them, a note naming that run; otherwise (a table edited by
    hand, someone else's, or a history that cannot be read) a copy kept beside it and named (the first of two
    plates counted from one folder with the default ``counts.csv`` would otherwise be lost without a word)."""
    import sqlite3

    from .csvout import delimiter, keep_copy
    from .history import HistoryError, last_run_writing

    try:
        held = out.read_bytes()
    except FileNotFoundError:
        return None
    if not worth_keeping(held):
        return None
    try:
        run = last_run_writing(out)
        same = run is not None and same_table(export_text(run["id"], sep=delimiter(out)), held, delimiter(out))
    except (HistoryError, sqlite3.Error, OSError, KeyError):
        run, same = None, False
    if same:
        return (f"note: replacing {out}, the rows of run {run['id']} ({run['started_at']}); `cellcount runs --export "
                f"{run['id']} --out FILE` writes them again")
    return f"note: {out} held {what_it_held(held)} the run history has no copy of; kept as {keep_copy(out)}"


def same_table(text: str, held: bytes, sep: str) -> bool:
    """Whether ``held`` (a file's bytes) is the table ``text`` writes, cell for cell: a run written in parts quotes
    each part as its rows need (every text of a part holding a name with a carriage return), its export all at once."""
    import csv
    import io

    if text.encode("utf-8") == held:
        return True
    try:
        theirs = held.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=sep)) == list(
        csv.reader(io.StringIO(theirs, newline=""), delimiter=sep))


def worth_keeping(head: bytes) -> bool:
    """Whether an output about to be replaced holds anything to lose: not when empty or one of this program's CSV
    header lines alone (``file,...``); any other single line (a settings JSON, a note: a one-line
    ``--out tuned.json``) is kept."""
    lines = head.strip().splitlines()
    return len(lines) >= 2 or (len(lines) == 1 and not lines[0].lstrip(b"\xef\xbb\xbf").startswith((b"file,", b"file\t")))


def what_it_held(head: bytes) -> str:
    return "rows" if len(head.strip().splitlines()) >= 2 else "a line of text"


def replaced_tables(paths: list[Path]) -> list[str]:
    """Notes for the per-object and per-region CSVs a run replaces: the run history keeps no copy of them, so
    each that holds rows is kept beside it first (a re-run with a changed Min. area would lose the earlier
    object table)."""
    from .csvout import keep_copy

    notes = []
    for path in paths:
        try:
            with open(path, "rb") as fh:  # the head tells whether it holds rows; an objects CSV can be large
                head = fh.read(1 << 16)
        except FileNotFoundError:
            continue
        if worth_keeping(head):
            notes.append(f"note: {path} held {what_it_held(head)}; kept as {keep_copy(path)}")
    return notes


def real(path: Path) -> Path:
    from .io.files import real_path  # imported here: the command line starts without the image readers

    return real_path(path)


def export_text(run_id: int, sep: str = ",") -> str:
    """A run's counts CSV as `runs --export` writes it: its rows as the history keeps them, formula-safe as count
    writes them; the header alone for a run stopped before its first image."""
    import pandas as pd

    from .batch import COUNT_COLUMNS
    from .csvout import csv_text
    from .history import run_rows

    rows = run_rows(run_id)
    if not len(rows.columns):
        rows = pd.DataFrame(columns=list(COUNT_COLUMNS))
    return csv_text(rows, sep=sep)  # formula-safe as count wrote it: '=plate.png stays text in a spreadsheet


TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


def not_a_table_problem(path: Path, suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> str | None:
    """Why ``runs --export`` must not write ``path``: a name of another kind (an image named by a slip, a
    spreadsheet's), or a link that points nowhere it can resolve."""
    if path.suffix.lower() not in suffixes:
        what = "exists and is not" if path.is_file() else "is not named as"
        return f"{path} {what} a {'/'.join(suffixes)} file: give a file name such as run{suffixes[0]}"
    if path.is_symlink() and not path.exists():
        with contextlib.suppress(OSError, RuntimeError):
            path.resolve(strict=False)
            return None  # a dangling link: its target is written, as count writes it
        return f"{path} is a loop of symbolic links: give a file name"
    return None


def check_outputs(args: argparse.Namespace, inputs: list[Path]) -> str | None:
    """A message when an output cannot be used, checked before any counting; None when all is well.

    Refused: an output that is a folder, names an input (an image or the settings file) or the same file
    as another output, or a folder where a file cannot be created. Output folders are created.
    """
    from .batch import LABELS_INDEX
    from .csvout import check_writable, not_a_file_problem, write_target
    from .io.files import IMAGE_EXTENSIONS, MICROSCOPE_EXTENSIONS

    for option, value in (("--out", args.out), ("--objects", args.objects), ("--labels-dir", args.labels_dir)):
        if value and (problem := not_a_file_problem(value)):
            return f"{option} {problem}; give a " + {"--labels-dir": "folder", "--objects": "file name such as objects.csv"
                                                      }.get(option, "file name such as counts.csv")
    outputs = {"--out": Path(args.out), "settings file": settings_path(args.out), "inputs file": inputs_path(args.out)}
    if getattr(args, "region_grid", None) or getattr(args, "regions", None):
        outputs["--regions-out"] = regions_path(args)
    if args.objects:
        outputs["--objects"] = Path(args.objects)
    for option, path in outputs.items():
        if path.is_dir():
            return f"{option} {path} is a folder; give a file name such as counts.csv"
        if path.suffix.lower() in SPREADSHEET_SUFFIXES:  # a CSV under that name: Excel refuses to open it
            return (f"{option} {path}: the tables are written as CSV, which Excel and LibreOffice open; "
                    f"name it {path.with_suffix('.csv').name}")
        if path.exists() and not path.is_file():  # /dev/stdout, a pipe: the file is replaced by a rename
            return f"{option} {path} is not a regular file; give a file name such as counts.csv"
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if same_file(outputs[a], outputs[b]):
                return f"{a} and {b} name the same file {outputs[a]}; give each output its own file"
    protected = [*inputs, *([Path(args.settings)] if args.settings else [])]
    resolved = {real(p): p for p in protected}
    for option, path in outputs.items():
        hit = resolved.get(real(path))
        if hit is not None:
            return f"{option} {path} names an input file ({hit}); it would be overwritten"
        if path.suffix.lower() in IMAGE_EXTENSIONS | MICROSCOPE_EXTENSIONS | {".zarr"}:
            # a slip among image names (--out b.tif): the image it replaces, kept under another name, is counted by
            # the next run of the folder, and the table takes a row of its own as an unreadable image
            return (f"{option} {path} is named like an image ({path.suffix}): the tables are written as CSV; name it "
                    f"{path.with_suffix('.csv').name}")
    if args.labels_dir and Path(args.labels_dir).exists() and not Path(args.labels_dir).is_dir():
        return f"--labels-dir {args.labels_dir} is a file, not a folder"
    for option, path in outputs.items():
        if args.labels_dir and same_file(path, Path(args.labels_dir)):
            return f"{option} and --labels-dir name the same path {path}"
        if args.labels_dir and same_file(path, Path(args.labels_dir) / LABELS_INDEX):
            return f"{option} {path} is the labels folder's own index of label images; give another file name"
    # where each is written: a link's own file's folder (latest.csv -> runs/42.csv writes in runs/)
    folders = [write_target(path).parent for path in outputs.values()] + ([Path(args.labels_dir)] if args.labels_dir else [])
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create an output folder: {err}"
    checks = [*map(write_target, outputs.values()), *([Path(args.labels_dir) / "x_labels.tif"] if args.labels_dir else [])]
    for path in checks:
        try:
            check_writable(path)
        except OSError as err:  # named by its folder: the test file's own name means nothing to the user
            return f"cannot write in the output folder {path.parent or Path('.')}: {err.strerror or err}"
    return None


def settings_path(out: str | Path) -> Path:
    return Path(out).with_suffix(".settings.json")


def inputs_path(out: str | Path) -> Path:
    """Beside ``--out``: each input's size and modification time when the run started, for ``--resume``."""
    return Path(out).with_suffix(".inputs.json")


def fingerprint(path: Path) -> list[int] | None:
    """[size, modification time in ns] of a file, None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def regions_path(args: argparse.Namespace) -> Path:
    return Path(args.regions_out) if args.regions_out else Path(args.out).with_suffix(".regions.csv")


def blocks_record(args: argparse.Namespace) -> dict | None:
    """The block and region settings of a run on workers, as its settings file records them (JSON values), so
    that --resume never mixes two grids in one regions CSV; None without workers (nothing is counted by blocks)."""
    if not (args.workers or args.scheduler):
        return None
    return json.loads(json.dumps({"block_px": args.block_px, "overlap_px": args.overlap_px,
                                  "regions": region_spec(args)}))


def other_regions(before: dict | None, now: dict | None) -> bool:
    """Whether two runs' :func:`blocks_record` differ where it matters: one grid per regions CSV. Counts by blocks
    on workers equal whole-image counts, so --workers alone, added or dropped, keeps the rows (rather than
    recounting a whole interrupted run)."""
    regions = [(r or {}).get("regions") for r in (before, now)]
    return regions[0] != regions[1] or (regions[1] is not None and before != now)


def region_spec(args: argparse.Namespace):
    from .blocks import read_regions

    if args.region_grid:
        rows, cols = (int(v) for v in args.region_grid.lower().split("x"))
        if rows < 1 or cols < 1:  # else workers started and every image got an error row
            raise ValueError(args.region_grid)
        return ("grid", (rows, cols))
    if args.regions:
        return ("boxes", read_regions(args.regions))
    return None


def labels_index(args: argparse.Namespace, done: set[str], inputs: set[str] = frozenset()):
    """The index of ``--labels-dir`` as a growing CSV, keeping the rows of images already counted (resume) and
    of other images than this run's ``inputs`` whose label files are still there (an earlier run's: a run of
    fewer images forgot them, and the next wrote ``b_2_labels.tif`` beside a stale ``b_labels.tif``), the label
    files those rows name, and every label file the folder's earlier index names (written by an earlier run, so
    a new run may replace them; any other file there is the user's)."""
    import pandas as pd

    from .batch import LABELS_INDEX
    from .csvout import CsvStream, keep_copy, unescape_cell

    path = Path(args.labels_dir) / LABELS_INDEX
    keep, ours = None, set()
    if path.is_file():
        try:
            old = pd.read_csv(path, dtype=str, keep_default_na=False)
            if "labels_file" in old.columns:
                ours = {unescape_cell(v) for v in old["labels_file"]}
            if "file" in old.columns and "labels_file" in old.columns:
                others = ~old["file"].isin(inputs) & old["labels_file"].map(
                    lambda f: (Path(args.labels_dir) / unescape_cell(f)).is_file())
                keep = old[old["file"].isin(done) | others]
        except (OSError, ValueError, pd.errors.ParserError):
            keep = None
        try:
            theirs = keep is None and worth_keeping(path.read_bytes()[: 1 << 16])  # a table of the user's there
        except OSError:  # unreadable: writing it fails as it did, with its own error
            theirs = False
        if theirs:
            print(f"note: {path} is not an index this program wrote; kept as {keep_copy(path)}", file=sys.stderr)
    stream = CsvStream(path, columns=("file", "labels_file"), keep=keep, empty_columns=("file", "labels_file"))
    return stream, ([] if keep is None else [unescape_cell(v) for v in keep["labels_file"]]), ours


def index_row(name: str, labels_file: str):
    import pandas as pd

    from .csvout import escape_cell

    return pd.DataFrame([{"file": escape_cell(name), "labels_file": labels_file}])


def write_labels(labels_dir: Path, name: str, labels, written: set[str], inputs: set[Path],
                 ours: set[str] = frozenset(), planned: dict[str, str] | None = None, model: str | None = None,
                 pixel_size_um: float | None = None) -> str:
    """``<stem>_labels.tif`` in ``labels_dir``, numbered when taken: by another image of this run (a.png and
    a.tif, sub1/a and sub2/a), an input, or a file there that no earlier run wrote (``ours``: the user's own
    ground truth, say); its name."""
    from .csvout import atomic_write_bytes
    from .io import labels_to_tiff_bytes

    out_name = planned.get(name) if planned else None
    out_name = out_name or free_label_name(labels_dir, name, written, inputs, ours)
    written.add(out_name)
    atomic_write_bytes(labels_dir / out_name, labels_to_tiff_bytes(labels, model=model, pixel_size_um=pixel_size_um))
    return out_name


def free_label_name(labels_dir: Path, name: str, taken_names: set[str], inputs: set[Path],
                    ours: set[str] = frozenset()) -> str:
    """The first of ``<stem>_labels.tif``, ``<stem>_2_labels.tif``, ... that :func:`write_labels` may use."""
    stem, k = Path(name).stem, 1
    out_name = f"{stem}_labels.tif"

    def taken(n: str) -> bool:
        path = labels_dir / n
        return n in taken_names or real(path) in inputs or (n not in ours and path.exists())

    while taken(out_name):
        k += 1
        out_name = f"{stem}_{k}_labels.tif"
    return out_name


def label_names(labels_dir: Path, names: list[str], written: set[str], inputs: set[Path],
                ours: set[str] = frozenset()) -> dict[str, str]:
    """Each image's label file name, given in the order the inputs are listed before any is counted: with workers
    the images finish in any order, and two runs could swap rep1/A01.png's and rep2/A01.png's label names."""
    reserved, plan = set(written), {}
    for name in names:
        plan[name] = free_label_name(labels_dir, name, reserved, inputs, ours)
        reserved.add(plan[name])
    return plan
