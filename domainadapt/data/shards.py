"""WebDataset shards: a file-backed image domain packed into a few large tar files, read with exact resume.

Half a million small files (DomainNet) are slow to list, copy and open on shared or network storage; the usual
answer is WebDataset's format: tar shards of ~100k examples, each example a group of members sharing a key
(`000000042.jpg` + `000000042.cls`). `write_shards` writes that format with `webdataset.ShardWriter` (the
library's writer, so any WebDataset pipeline reads our shards), the images' original bytes unchanged, then
indexes every member's byte span (tarfile, headers only) into `index.npy` beside the shards.

Reading does not go through WebDataset's sequential pipeline: its shuffle buffer and shard order are not a
function of a small checkpointable state, so a resumed run would not see the batches it would have seen.
`load_shards` instead returns the same ImageFileDomain as the folder and list forms, with `spans` — each
example is one seek + read of its byte span in its shard — so the stream protocol of streams.py ((index,
draw_seed) items, two-integer stream state, any number of DataLoader workers) resumes bitwise as it does for
files. Shards written elsewhere (no `index.npy`) are indexed on load from their `.cls` members.

On disk (`out_dir`):
    shard-000000.tar …         WebDataset shards: <key>.<image ext> (original bytes), <key>.cls (label as text)
    index.npy                  int64 N×5: shard number, image byte offset, image byte size, label, part
    index.json                 format, classes, shard file names, parts (e.g. ["all"] or ["train", "test"])
The folder appears whole or not at all: everything is written under `<out_dir>.partial` and renamed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .domain import DomainError
from .image_files import ImageFileDomain
from .image_lists import IMAGE_EXTENSIONS

FORMAT = "domainadapt-shards/1"
PATTERN = "shard-%06d.tar"
COLUMNS = ("shard", "offset", "size", "label", "part")
_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def write_shards(
    parts: Mapping[str, ImageFileDomain],
    out_dir: str | os.PathLike,
    *,
    max_count: int = 100_000,
    max_bytes: float = 3e9,
) -> Path:
    """Pack the images of `parts` ({'all': domain} or {'train': …, 'test': …}, one class tuple) into WebDataset
    shards under `out_dir` (which must not exist) with their index; returns `out_dir`. A shard closes at
    `max_count` examples or `max_bytes` bytes, whichever comes first."""
    import webdataset  # here, not at the top: its import takes ~2 s and only the writer needs it

    out = Path(out_dir).expanduser()
    if out.exists():
        raise DomainError(f"shard folder {out} already exists; choose a new one (nothing was written)")
    if not parts:
        raise DomainError("write_shards: no parts to write")
    if max_count < 1 or max_bytes <= 0:
        raise DomainError(f"write_shards: max_count must be ≥ 1 and max_bytes > 0, got {max_count}, {max_bytes}")
    names = list(parts)
    classes = next(iter(parts.values())).classes
    for name, domain in parts.items():
        if domain.spans is not None:
            raise DomainError(f"part {name!r} ({domain.name}) is already sharded; write from its folder or list")
        if domain.classes != classes:
            raise DomainError(f"parts {names[0]!r} and {name!r} have different classes")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a previous writer's leftovers: never renamed, so never read
    partial.mkdir(parents=True)
    key = 0
    with webdataset.ShardWriter(str(partial / PATTERN), maxcount=max_count, maxsize=max_bytes, verbose=0) as sink:
        for part_index, name in enumerate(names):
            domain = parts[name]
            for path, label in zip(domain.paths, domain.labels.tolist()):
                ext = Path(path).suffix.lower().lstrip(".")
                if ext not in _IMAGE_EXTS:
                    raise DomainError(f"cannot shard {path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
                try:
                    data = Path(path).read_bytes()
                except OSError as exc:
                    raise DomainError(f"cannot read image {path} for sharding: {exc}") from None
                sink.write({"__key__": f"{key:09d}", ext: data, "cls": str(label), "part": str(part_index)})
                key += 1
    index, shard_files = index_shards(partial)
    np.save(partial / "index.npy", index)
    meta = {"format": FORMAT, "classes": list(classes), "shards": shard_files, "parts": names, "columns": COLUMNS,
            "count": int(index.shape[0])}
    (partial / "index.json").write_text(json.dumps(meta, indent=1))
    os.replace(partial, out)
    return out


def index_shards(folder: Path) -> tuple[np.ndarray, list[str]]:
    """(N×5 int64 index in key order, shard file names) of the `*.tar` shards in `folder`: each example's image
    byte span, its label (from `.cls`) and its part (from `.part`, else 0)."""
    shard_files = sorted(p.name for p in folder.glob("*.tar"))
    if not shard_files:
        raise DomainError(f"shard folder {folder} holds no .tar shards")
    rows: list[list[int]] = []
    for number, name in enumerate(shard_files):
        examples: dict[str, dict[str, int | bytes]] = {}
        try:
            with tarfile.open(folder / name) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    base = os.path.basename(member.name)
                    key, _, ext = base.partition(".")
                    example = examples.setdefault(os.path.join(os.path.dirname(member.name), key), {})
                    if ext.lower() in _IMAGE_EXTS:
                        example["offset"], example["size"] = member.offset_data, member.size
                    elif ext in ("cls", "part"):
                        handle = tar.extractfile(member)
                        example[ext] = handle.read() if handle is not None else b""
        except (OSError, tarfile.TarError) as exc:
            raise DomainError(f"cannot read shard {folder / name}: {exc}") from None
        for key in sorted(examples):
            example = examples[key]
            if "offset" not in example or "cls" not in example:
                raise DomainError(f"shard {folder / name}: example {key!r} lacks an image or a .cls label member")
            try:
                label, part = int(example["cls"]), int(example.get("part", b"0"))
            except ValueError:
                raise DomainError(f"shard {folder / name}: example {key!r} has a label that is not an integer: "
                                  f"{example['cls']!r}") from None
            rows.append([number, int(example["offset"]), int(example["size"]), label, part])
    return np.asarray(rows, dtype=np.int64).reshape(-1, len(COLUMNS)), shard_files


def load_shards(folder: str | os.PathLike, *, image_size: int) -> dict[str, ImageFileDomain]:
    """{'all': domain} or {'train', 'test'} (as written) of a shard folder; items are resized to image_size.

    With `index.json` + `index.npy` (our writer) nothing is scanned; bare WebDataset shards are indexed from
    their members, with classes named by their numbers."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DomainError(f"shard folder {root} does not exist (expected {root}/shard-*.tar, as written by "
                          f"`domainadapt shards`)")
    meta_file = root / "index.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            index = np.load(root / "index.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DomainError(f"cannot read the index of shard folder {root}: {exc}") from None
        if meta.get("format") != FORMAT or index.ndim != 2 or index.shape != (meta.get("count"), len(COLUMNS)):
            raise DomainError(f"shard folder {root}: index.json / index.npy are not a {FORMAT} index "
                              f"(format {meta.get('format')!r}, index shape {index.shape})")
        shard_files, classes, part_names = meta["shards"], tuple(meta["classes"]), list(meta["parts"])
    else:
        index, shard_files = index_shards(root)
        classes = tuple(str(c) for c in range(int(index[:, 3].max()) + 1)) if len(index) else ()
        part_names = ["all"] if not len(index) or index[:, 4].max() == 0 else [str(p) for p in
                                                                                range(int(index[:, 4].max()) + 1)]
    missing = [name for name in shard_files if not (root / name).is_file()]
    if missing:
        raise DomainError(f"shard folder {root}: {len(missing)} indexed shards are missing, the first is {missing[0]}")
    shard_paths = [str(root / name) for name in shard_files]
    parts: dict[str, ImageFileDomain] = {}
    protocol = "official" if len(part_names) > 1 else "split"
    for number, part in enumerate(part_names):
        rows = index[index[:, 4] == number]
        if not len(rows):
            raise DomainError(f"shard folder {root}: part {part!r} has no examples")
        name = root.name if len(part_names) == 1 else f"{root.name}/{part}"
        parts[part] = ImageFileDomain(
            name, [shard_paths[s] for s in rows[:, 0].tolist()], torch.from_numpy(rows[:, 3].copy()), classes,
            transform="resize", image_size=image_size, protocol=protocol,
            spans=torch.from_numpy(rows[:, 1:3].copy()))
    return parts
