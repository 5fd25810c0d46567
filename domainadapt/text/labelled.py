"""Labelled text from the user's own data: a CSV / JSON Lines / Parquet file or a Hugging Face dataset.

Source specs (the `source` of task text_classification; `target` takes the same forms):
    csv:PATH        a CSV file with a header row (datasets' "csv" builder; pandas.read_csv underneath)
    jsonl:PATH      JSON Lines, one object per line (json:PATH also reads a JSON array; datasets' "json" builder)
    parquet:PATH    a Parquet file (datasets' "parquet" builder)
    hf:NAME         a Hugging Face Hub dataset: datasets.load_dataset(NAME, hf_config) (needs internet or the cache)
    hf:FOLDER       a local folder: one written by Dataset / DatasetDict.save_to_disk (datasets.load_from_disk), else a
                    folder of data files read by datasets.load_dataset(FOLDER) (train.csv + test.csv become splits)

Columns are chosen by `LabelledTextOptions` (text_column, optional text_pair_column, label_column). Labels keep
their names: a datasets.ClassLabel column keeps its names; string labels become the sorted class names; integer
labels 0..K-1 get the names "0".."K-1". A source with one split (a file, a saved Dataset, a hub dataset without the
test split) gives `test=None`: the task holds out a stratified share (config.test_fraction, config.split_seed).

Hub names that cannot be fetched fail in one line saying so and how to use a local file or folder instead, as
the CLI prints `error: ...` lines and an offline machine is the usual case (no internet on ours).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mlm import hub_offline, one_line

FILE_KINDS = {"csv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}  # spec kind -> datasets builder
KINDS = (*FILE_KINDS, "hf")
SPEC_FORMS = "csv:PATH, jsonl:PATH, json:PATH, parquet:PATH or hf:NAME_OR_FOLDER"
OFFLINE_HINT = ("download it where there is internet (datasets.load_dataset(...).save_to_disk(FOLDER), or to_csv / "
                "to_parquet) and pass hf:FOLDER, csv:PATH or parquet:PATH")


class LabelledTextError(ValueError):
    """Labelled text that cannot be read as a classification task; the message names the source and the field."""


@dataclass(frozen=True)
class LabelledTextOptions:
    """Which columns and splits of a labelled source are read (task_kwargs of text_classification)."""

    text_column: str = "text"  # the column holding the text
    text_pair_column: str | None = None  # a second text column, for pair tasks (NLI, paraphrase): tokenized as a pair
    label_column: str = "label"  # the class of each row: strings, integers 0..K-1 or a ClassLabel
    hf_config: str | None = None  # hf:NAME only: the dataset's configuration (datasets.load_dataset's `name`)
    hf_split_train: str = "train"  # hf: sources: the split trained on
    hf_split_test: str | None = None  # hf: sources: the split tested on; None: "test" if present, else a held-out share


@dataclass
class LabelledText:
    """train / test: datasets.Dataset with "text", optional "text_pair", and "label" (int 0..K-1); test None: the
    source has one split (hold out a share). class_names[i] is label i's name."""

    train: Any
    test: Any | None
    class_names: tuple[str, ...]


def parse_spec(spec: str) -> tuple[str, str] | None:
    """(kind, location) of a labelled-source spec, or None when `spec` is not one (a named domain, foldoc_subjects)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        return None
    if not rest.strip():
        raise LabelledTextError(f"source '{spec}' names no {'dataset' if kind == 'hf' else 'file'}; use {SPEC_FORMS}")
    return kind, rest


def is_labelled_spec(spec: str) -> bool:
    return parse_spec(spec) is not None


def load_errors() -> tuple[type[BaseException], ...]:
    """What datasets / huggingface_hub raise for a name or file they cannot give (network, not found, bad
    format); all but DatasetsError subclasses are OSError or ValueError (ConnectionError, HfHubHTTPError,
    DatasetNotFoundError, HFValidationError)."""
    from datasets.exceptions import DatasetsError

    return (OSError, ValueError, RuntimeError, DatasetsError)


def _local(location: str) -> Path:
    return Path(location).expanduser()


def check_labelled_source(spec: str, options: LabelledTextOptions, where: str = "source") -> None:
    """Cheap checks before any long work: the file exists and is not empty; a folder exists; a hub dataset (and
    its hf_config) can be reached: its builder is loaded (metadata only, from the cache when offline)."""
    parsed = parse_spec(spec)
    if parsed is None:
        raise LabelledTextError(f"{where}: '{spec}' is not a labelled-text source; use {SPEC_FORMS}")
    kind, location = parsed
    if kind in FILE_KINDS:
        path = _local(location)
        if not path.exists():
            raise LabelledTextError(f"{where}: file {path} does not exist (from '{spec}')")
        if not path.is_file():
            raise LabelledTextError(f"{where}: {path} is a folder, not a {kind} file; a folder of data files or a "
                                    "save_to_disk folder is hf:FOLDER")
        if path.stat().st_size == 0:
            raise LabelledTextError(f"{where}: file {path} is empty")
        return
    path = _local(location)
    if path.is_dir():
        return
    if path.exists() or location.startswith(("/", ".", "~")) or location.count("/") > 1:  # hub ids: OWNER/NAME
        raise LabelledTextError(f"{where}: dataset folder {path} does not exist (from '{spec}')")
    _hub_builder(location, options.hf_config, where)


def _hub_builder(name: str, config: str | None, where: str) -> Any:
    from datasets import load_dataset_builder

    try:
        return load_dataset_builder(name, config)
    except load_errors() as err:
        raise LabelledTextError(hub_dataset_message(name, config, err, where)) from None


def hub_dataset_message(name: str, config: str | None, err: BaseException, where: str) -> str:
    from huggingface_hub.errors import GatedRepoError

    asked = f"Hugging Face dataset '{name}'" + (f" (hf_config '{config}')" if config else "")
    detail = one_line(err)
    if isinstance(err, GatedRepoError):
        return f"{where}: {asked} is gated: accept its terms on the Hub and log in (hf auth login) ({detail})"
    if "config" in detail.lower() and ("missing" in detail.lower() or "not found" in detail.lower()):
        return f"{where}: {asked}: {detail}; pass --task-arg hf_config=NAME (a corpus: hub:NAME:CONFIG)"
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else " (offline?)"
    return (f"{where}: {asked} could not be downloaded{offline}: {detail}; {OFFLINE_HINT}")


@contextlib.contextmanager
def _progress_bars(show: bool):
    """datasets' progress bars ("Generating train split") on or off for this block (off: config.progress false)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()


def read_splits(spec: str, options: LabelledTextOptions, where: str) -> tuple[Any, Any | None]:
    """(train, test or None) of a spec as datasets.Dataset, all columns, unchecked (`load_labelled` checks them;
    `corpora.load_text` reads unlabelled corpora in these forms through it)."""
    import datasets

    kind, location = parse_spec(spec) or ("", "")
    check_labelled_source(spec, options, where)
    path = _local(location)
    try:
        if kind in FILE_KINDS:
            return datasets.load_dataset(FILE_KINDS[kind], data_files=str(path), split="train"), None
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path), options.hf_config)
        else:
            loaded = datasets.load_dataset(location, options.hf_config)
    except load_errors() as err:
        if "corresponds to no data" in str(err):  # a header without rows: datasets finds no split to give
            raise LabelledTextError(f"{where}: '{spec}' has no rows") from None
        if kind in FILE_KINDS or path.is_dir():
            raise LabelledTextError(f"{where}: cannot read {kind} data from {path}: {one_line(err)}") from None
        raise LabelledTextError(hub_dataset_message(location, options.hf_config, err, where)) from None
    if isinstance(loaded, datasets.Dataset):
        return loaded, None
    splits = list(loaded)
    if options.hf_split_train not in loaded:
        raise LabelledTextError(f"{where}: '{spec}' has no split '{options.hf_split_train}' (splits: {splits}); "
                                "pass --task-arg hf_split_train=NAME")
    if options.hf_split_test is not None and options.hf_split_test not in loaded:
        raise LabelledTextError(f"{where}: '{spec}' has no split '{options.hf_split_test}' (splits: {splits}); "
                                "pass --task-arg hf_split_test=NAME, or leave it unset to hold out a share of train")
    test = options.hf_split_test or ("test" if "test" in loaded and options.hf_split_train != "test" else None)
    return loaded[options.hf_split_train], (loaded[test] if test is not None else None)


def _columns(data: Any, options: LabelledTextOptions, spec: str, where: str) -> None:
    wanted = [("text_column", options.text_column), ("label_column", options.label_column)]
    if options.text_pair_column is not None:
        wanted.insert(1, ("text_pair_column", options.text_pair_column))
    for field_name, column in wanted:
        if column not in data.column_names:
            raise LabelledTextError(f"{where}: '{spec}' has no column '{column}' (its columns: {data.column_names}); "
                                    f"pass --task-arg {field_name}=NAME")


def _texts(data: Any, column: str, spec: str, where: str) -> list[str]:
    values = data[column]
    bad = [i for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
    if bad:
        raise LabelledTextError(f"{where}: column '{column}' of '{spec}' holds {type(values[bad[0]]).__name__} values "
                                f"(row {bad[0]}), not text; pass --task-arg text_column=NAME")
    return ["" if v is None else v for v in values]


def _label_values(data: Any, column: str, spec: str, where: str) -> list[Any]:
    values = list(data[column])
    missing = sum(v is None for v in values)
    if missing:
        raise LabelledTextError(f"{where}: {missing} of {len(values)} rows of '{spec}' have no '{column}' "
                                "(label_column); drop them or fill them in")
    return values


def _class_names(parts: list[tuple[Any, list[Any]]], column: str, spec: str, where: str) -> tuple[str, ...]:
    """The class names of a label column: ClassLabel names; sorted strings; "0".."K-1" for integers 0..K-1."""
    from datasets import ClassLabel

    feature = parts[0][0].features.get(column)
    if isinstance(feature, ClassLabel):
        return tuple(feature.names)
    values = [v for _, vs in parts for v in vs]
    if all(isinstance(v, str) for v in values):
        return tuple(sorted(set(values)))
    if all(isinstance(v, (int, float)) for v in values):  # bool is an int: False/True -> "0"/"1"
        if any(isinstance(v, float) and not (math.isfinite(v) and v == int(v)) for v in values):
            raise LabelledTextError(f"{where}: label_column '{column}' of '{spec}' holds non-integer numbers "
                                    "(a regression target?); text_classification needs class labels")
        low = min(int(v) for v in values)
        if low < 0:
            raise LabelledTextError(f"{where}: label_column '{column}' of '{spec}' holds the label {low} (unlabelled "
                                    "rows, as GLUE test splits mark them?); labels must be 0..K-1 or strings (an "
                                    "hf: source: pass --task-arg hf_split_test=validation)")
        return tuple(str(k) for k in range(max(int(v) for v in values) + 1))
    kinds = sorted({type(v).__name__ for v in values})
    raise LabelledTextError(f"{where}: label_column '{column}' of '{spec}' mixes or holds unsupported types {kinds}; "
                            "labels must be all strings or all integers 0..K-1")


def _encode(values: list[Any], names: tuple[str, ...], feature: Any, spec: str, where: str) -> list[int]:
    from datasets import ClassLabel

    if isinstance(feature, ClassLabel):
        if values and min(values) < 0:
            raise LabelledTextError(f"{where}: '{spec}' has rows labelled {min(values)} (unlabelled, as GLUE test "
                                    "splits mark them); pass --task-arg hf_split_test=validation or drop them")
        return [int(v) for v in values]
    if values and isinstance(values[0], str):
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise LabelledTextError(f"{where}: '{spec}' has label(s) {unknown[:5]} that are not among the classes "
                                    f"{list(names)}")
        return [index[v] for v in values]
    ints = [int(v) for v in values]
    if ints and max(ints) >= len(names):
        raise LabelledTextError(f"{where}: '{spec}' has the label {max(ints)}, beyond the {len(names)} classes "
                                f"{list(names)}")
    return ints


def load_labelled(spec: str, options: LabelledTextOptions | None = None, *, where: str = "source",
                  class_names: tuple[str, ...] | None = None, progress: bool = True) -> LabelledText:
    """The labelled text of a source spec (module docstring) with labels as 0..K-1 and their names.

    `class_names` (a target read against its source): labels are mapped to these names instead, and a target
    with a class the source lacks is an error. Fails in one line: missing file or column, one class, no rows.
    `progress`: datasets' progress bars while reading."""
    from datasets import ClassLabel, Dataset

    options = options or LabelledTextOptions()
    with _progress_bars(progress):
        train, test = read_splits(spec, options, where)
    parts = [d for d in (train, test) if d is not None]
    for data in parts:
        _columns(data, options, spec, where)
    if len(train) == 0:
        raise LabelledTextError(f"{where}: '{spec}' has no rows" + (f" in split '{options.hf_split_train}'"
                                                                    if test is not None else ""))
    labels = [(d, _label_values(d, options.label_column, spec, where)) for d in parts]
    names = _class_names(labels, options.label_column, spec, where)
    if class_names is not None:
        own = names
        feature = train.features.get(options.label_column)
        if isinstance(feature, ClassLabel) and tuple(own) != tuple(class_names):
            raise LabelledTextError(f"{where}: '{spec}' has the classes {list(own)}, the source {list(class_names)}; "
                                    "they must be the same, in the same order")
        names = tuple(class_names)
    out = []
    for data, values in labels:
        ids = _encode(values, names, data.features.get(options.label_column), spec, where)
        columns: dict[str, list] = {"text": _texts(data, options.text_column, spec, where)}
        if options.text_pair_column is not None:
            columns["text_pair"] = _texts(data, options.text_pair_column, spec, where)
        columns["label"] = ids
        out.append(Dataset.from_dict(columns))
    present = sorted(set(out[0]["label"]))
    if class_names is None and len(present) < 2:
        raise LabelledTextError(f"{where}: label_column '{options.label_column}' of '{spec}' has one class "
                                f"({names[present[0]]!r}) in {len(out[0])} training rows; classification needs two "
                                "or more")
    return LabelledText(out[0], out[1] if len(out) > 1 else None, names)
