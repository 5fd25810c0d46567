"""Image lists and image folders -> (paths, labels, classes), without decoding a single image.

Two on-disk forms cover the public DA benchmarks and users' own data:

* an image-list file, one "relative/path label" per line (the format of the TLlib / CDAN lists of Office-31 and
  Office-Home, of VisDA-2017's `image_list.txt` and of DomainNet's `<domain>_train.txt` / `<domain>_test.txt`);
  as in TLlib's `ImageList.parse_data_file`, the label is the last field and the path is everything before it
  (so paths may hold spaces), relative to a root folder unless absolute;
* an ImageFolder tree, root/<class>/<image> (torchvision's layout); classes are the sorted sub-folder names unless
  a canonical class tuple is given, files are found recursively under each class folder, in sorted order.

Every failure is one DomainError line naming the file (and line) at fault.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .domain import DomainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def read_image_list(
    list_file: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    check_files: bool = True,
) -> tuple[list[str], list[int], tuple[str, ...]]:
    """(paths, labels, classes) of an image-list file; paths are resolved against `root` (default: the list's
    folder). Without `classes`, there are max(label) + 1 classes, each named after the folder holding its images
    where that folder is the same for the whole class (the usual <class>/<image> layout), else its number."""
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise DomainError(f"image list {list_file} does not exist")
    base = Path(root).expanduser() if root is not None else list_file.parent
    paths: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    with open(list_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) < 2:
                    raise ValueError
                label = int(fields[-1])
            except ValueError:
                raise DomainError(f"{list_file}:{lineno}: expected 'relative/path label', "
                                  f"got {line.strip()!r}") from None
            rel = " ".join(fields[:-1])
            paths.append(os.path.normpath(rel if os.path.isabs(rel) else os.path.join(base, rel)))
            labels.append(label)
            lines.append(lineno)
    if not paths:
        raise DomainError(f"image list {list_file} lists no images")
    n_classes = len(classes) if classes is not None else max(labels) + 1
    for label, lineno in zip(labels, lines):
        if not 0 <= label < n_classes:
            raise DomainError(f"{list_file}:{lineno}: label {label} out of range [0, {n_classes})")
    if check_files:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DomainError(f"{list_file}: {len(missing)} of {len(paths)} listed images do not exist; "
                              f"the first is {missing[0]}")
    names = tuple(classes) if classes is not None else _class_names(paths, labels, n_classes)
    return paths, labels, names


def _class_names(paths: list[str], labels: list[int], n_classes: int) -> tuple[str, ...]:
    folders: dict[int, set[str]] = {}
    for path, label in zip(paths, labels):
        folders.setdefault(label, set()).add(os.path.basename(os.path.dirname(path)))
    names = [next(iter(folders[c])) if len(folders.get(c, ())) == 1 else str(c) for c in range(n_classes)]
    return tuple(names) if len(set(names)) == n_classes else tuple(str(c) for c in range(n_classes))


def read_image_folder(
    root: str | os.PathLike, *, classes: Sequence[str] | None = None
) -> tuple[list[str], list[int], tuple[str, ...]]:
    """(paths, labels, classes) of an ImageFolder tree root/<class>/<image>. With canonical `classes`, labels are
    indices into them and a sub-folder that is not one of them is an error (a class folder may be absent)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DomainError(f"image folder {root} does not exist (expected {root}/<class>/<image files>)")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if classes is None:
        names = tuple(folders)
    else:
        names = tuple(classes)
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise DomainError(f"image folder {root} has sub-folders that are not classes of this benchmark: "
                              f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    index = {name: i for i, name in enumerate(names)}
    paths: list[str] = []
    labels: list[int] = []
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(root / folder, followlinks=True):
            dirnames.sort()
            for file in sorted(filenames):
                if file.lower().endswith(IMAGE_EXTENSIONS) and not file.startswith("."):
                    paths.append(os.path.normpath(os.path.join(dirpath, file)))
                    labels.append(index[folder])
    if not paths:
        raise DomainError(f"image folder {root} holds no images in class sub-folders (expected {root}/<class>/<image>, "
                          f"extensions {', '.join(IMAGE_EXTENSIONS)})")
    return paths, labels, names
