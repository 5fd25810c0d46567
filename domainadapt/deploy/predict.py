"""`domainadapt predict RUN --input FOLDER|FILE --out predictions.csv`: a finished run's predictions on new data.

Images: every image file under a folder (recursively, sorted) or one image file, or an image-list file
("path [label]" per line); each goes through the run's evaluation pipeline (the input contract's `transform`).
Texts: a .txt file (one text per line), or a CSV / JSON Lines file with a text column (`text_column`).
The CSV has one row per input: `input` (the path or the text), `prediction` (the class name), `probability` (its
softmax probability), then `p[<class>]` for every class in the run's order. Batched, with a tqdm progress bar;
written atomically (a crash leaves no half CSV).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.image_files import ImageFileDomain
from ..data.image_lists import IMAGE_EXTENSIONS
from ..io import atomic_write_text
from ..models.registry import resolve_text_backbone
from .loaded import DeployError, LoadedRun, load_run


def image_inputs(source: Path) -> list[str]:
    """The image files `source` names: a folder (recursive), one image, or an image-list file."""
    if source.is_dir():
        files = sorted(str(p) for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not p.name.startswith("."))
        if not files:
            raise DeployError(f"no image files under {source} (extensions {', '.join(IMAGE_EXTENSIONS)})")
        return files
    if not source.is_file():
        raise DeployError(f"--input {source} does not exist")
    if source.suffix.lower() in IMAGE_EXTENSIONS:
        return [str(source)]
    paths = []
    for line in source.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields:
            rel = " ".join(fields[:-1]) if len(fields) > 1 and fields[-1].lstrip("-").isdigit() else " ".join(fields)
            paths.append(rel if os.path.isabs(rel) else str(source.parent / rel))
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or missing:
        raise DeployError(f"{source}: {'lists no images' if not paths else f'{len(missing)} listed images do not exist, the first is {missing[0]}'}")
    return paths


def text_inputs(source: Path, text_column: str) -> list[str]:
    """The texts of a .txt file (one per line, blank lines skipped) or a CSV / JSON Lines file's `text_column`."""
    if not source.is_file():
        raise DeployError(f"--input {source} does not exist")
    suffix = source.suffix.lower()
    if suffix == ".txt":
        texts = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix in (".csv", ".jsonl", ".json"):
        import pandas as pd

        frame = pd.read_csv(source) if suffix == ".csv" else pd.read_json(source, lines=suffix == ".jsonl")
        if text_column not in frame.columns:
            raise DeployError(f"{source} has no column {text_column!r} (columns: {', '.join(map(str, frame.columns))}); "
                              f"pass --text-column NAME")
        texts = [str(t) for t in frame[text_column].tolist()]
    else:
        raise DeployError(f"--input {source}: texts come as .txt (one per line), .csv or .jsonl")
    if not texts:
        raise DeployError(f"{source} holds no texts")
    return texts


def _image_batches(run: LoadedRun, paths: list[str], batch_size: int):
    domain = ImageFileDomain("predict", paths, torch.zeros(len(paths), dtype=torch.int64), tuple(run.classes),
                             transform=run.contract.get("transform", "resize"),
                             image_size=int(run.contract["image_size"]))
    for start in range(0, len(paths), batch_size):
        yield torch.stack([domain[i][0] for i in range(start, min(start + batch_size, len(paths)))])


def _text_batches(run: LoadedRun, texts: list[str], batch_size: int):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_backbone(run.contract["tokenizer"]))
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, padding=True,
                        max_length=int(run.contract.get("max_length", 128)), return_tensors="pt")
        yield {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def predict_run(run_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike, *,
                batch_size: int = 64, device: str = "cpu", text_column: str = "text",
                progress: bool = True) -> Any:
    """Predict with the finished run in `run_dir` on `source`; write the CSV `out`; return it as a DataFrame."""
    import pandas as pd

    if batch_size < 1:
        raise DeployError(f"--batch-size must be ≥ 1, got {batch_size}")
    source = Path(source).expanduser()
    run = load_run(run_dir)
    if run.kind not in ("image", "text"):
        raise DeployError(f"predict takes classifier runs; {run.run_dir} is a {run.kind} run (export it with "
                          "--format hf and use it as a backbone)")
    inputs = image_inputs(source) if run.kind == "image" else text_inputs(source, text_column)
    batches = (_image_batches if run.kind == "image" else _text_batches)(run, inputs, batch_size)
    target = torch.device(device)
    model = run.model.to(target).eval()
    probs = []
    with torch.no_grad():
        for batch in tqdm(batches, total=-(-len(inputs) // batch_size), desc="predict", unit="batch",
                          disable=not progress):
            x = batch.to(target) if isinstance(batch, torch.Tensor) else {k: v.to(target) for k, v in batch.items()}
            probs.append(torch.softmax(model(x).float(), dim=1).cpu())
    p = torch.cat(probs)
    best = p.argmax(1)
    frame = pd.DataFrame({"input": inputs, "prediction": [run.classes[i] for i in best.tolist()],
                          "probability": p.gather(1, best[:, None]).squeeze(1).numpy()})
    frame = pd.concat([frame, pd.DataFrame(p.numpy(), columns=[f"p[{c}]" for c in run.classes])], axis=1)
    atomic_write_text(out, frame.to_csv(index=False))
    return frame
