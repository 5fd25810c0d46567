"""`domainadapt export RUN --format onnx|torchscript|safetensors|hf --out DIR`: a finished run's model, checked, with
a model card.

Every format is checked against the PyTorch model before the folder appears: ONNX in onnxruntime and TorchScript
reloaded, on `check_inputs` (50) random inputs of the run's input contract (images in [0, 1] of its size; texts:
random token ids with random lengths and padding), the largest absolute logit difference recorded in the card and
above `atol` an error; safetensors reloads bit-for-bit; the Hugging Face format (text runs whose head is Hugging
Face's own, task option `pooling=hf`) reloads with `AutoModelForSequenceClassification` and is compared the same
way. ONNX has a dynamic batch dimension (and sequence length for text). The folder is written under
`<DIR>.partial` and renamed at the end, so a failed export leaves nothing that looks finished.

The model card (MODEL_CARD.md and model_card.json) holds the run's config, final metrics, class names and input
contract (size, value range, where normalisation happens; tokenizer and max length for text).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write_json, atomic_write_text
from ..models.registry import resolve_text_backbone
from .loaded import DeployError, LoadedRun, load_run

EXPORT_FORMATS = ("onnx", "torchscript", "safetensors", "hf")
CHECK_INPUTS = 50


class ExportError(DeployError):
    """An export that failed its check or cannot be made for this run."""


class _TextForward(nn.Module):
    """Positional (input_ids, attention_mask) → logits, the signature ONNX and TorchScript export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})


def example_inputs(run: LoadedRun, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """n random inputs of the run's contract: images (n×3×S×S in [0, 1]) or (input_ids, attention_mask)."""
    g = torch.Generator().manual_seed(seed)
    if run.kind == "image":
        s = int(run.contract["image_size"])
        return (torch.rand(n, 3, s, s, generator=g),)
    vocab = int(text_model_config(run.model).vocab_size)
    length = min(int(run.contract.get("max_length", 32)), 32)
    ids = torch.randint(0, vocab, (n, length), generator=g)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


def text_model_config(model: nn.Module) -> Any:
    """The Hugging Face config of a text run's model (HFSequenceClassifier's own, TextClassifier's encoder's)."""
    return model.config if hasattr(model, "hf_model") or not hasattr(model, "encoder") else model.encoder.config


def _forward_module(run: LoadedRun) -> nn.Module:
    return (run.model if run.kind == "image" else _TextForward(run.model)).eval()


def _names(run: LoadedRun) -> tuple[list[str], dict[str, dict[int, str]]]:
    if run.kind == "image":
        return ["images"], {"images": {0: "batch"}, "logits": {0: "batch"}}
    return (["input_ids", "attention_mask"],
            {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
             "logits": {0: "batch"}})


def _max_diff(a: torch.Tensor, b: Any) -> float:
    return float((a.float() - torch.as_tensor(b).float()).abs().max())


def _export_onnx(run: LoadedRun, folder: Path, inputs: tuple[torch.Tensor, ...], reference: torch.Tensor) -> dict:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime") from None
    module = _forward_module(run)
    names, axes = _names(run)
    path = folder / "model.onnx"
    sample = tuple(x[:2] for x in inputs)
    try:
        torch.onnx.export(module, sample, str(path), input_names=names, output_names=["logits"], dynamic_axes=axes,
                          opset_version=18, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter's many failure types: one line naming the model
        raise ExportError(f"ONNX export of {type(run.model).__name__} failed: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: x.numpy() for name, x in zip(names, inputs)}
    out = session.run(["logits"], feed)[0]
    return {"file": path.name, "checked_with": f"onnxruntime {onnxruntime.__version__}",
            "max_abs_logit_diff": _max_diff(reference, out), "dynamic_axes": {k: list(v.values()) for k, v in axes.items()}}


def _export_torchscript(run: LoadedRun, folder: Path, inputs: tuple[torch.Tensor, ...], reference: torch.Tensor) -> dict:
    module = _forward_module(run)
    path = folder / "model.pt"
    with torch.no_grad():
        traced = torch.jit.trace(module, tuple(x[:2] for x in inputs), check_trace=False)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        out = loaded(*inputs)
    return {"file": path.name, "checked_with": "torch.jit.load", "max_abs_logit_diff": _max_diff(reference, out)}


def _export_safetensors(run: LoadedRun, folder: Path, inputs: tuple[torch.Tensor, ...], reference: torch.Tensor) -> dict:
    from safetensors.torch import load_file, save_file

    state = {k: v.detach().contiguous() for k, v in run.model.state_dict().items()}
    path = folder / "model.safetensors"
    save_file(state, str(path), metadata={"format": "pt", "domainadapt_task": run.config.task})
    atomic_write_json(folder / "config.json", {"config": run.config.to_dict(),
                                               "model_info": {"num_classes": len(run.classes)}})
    back = load_file(str(path))
    same = set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    if not same:
        raise ExportError(f"{path}: the reloaded tensors differ from the model's")
    return {"file": path.name, "checked_with": "safetensors.torch.load_file (bitwise)", "max_abs_logit_diff": 0.0,
            "rebuild": "domainadapt: build the run's model from config.json, then load_state_dict(load_file(...))"}


LANGUAGE_MODEL_KINDS = ("masked_lm", "causal_lm")


def _export_language_model(run: LoadedRun, folder: Path) -> dict:
    """A DAPT / TAPT run's language model as a Hugging Face model folder (AutoModelForMaskedLM or
    AutoModelForCausalLM + its tokenizer), reloaded and compared on example inputs."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    auto = AutoModelForMaskedLM if run.kind == "masked_lm" else AutoModelForCausalLM
    run.model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(resolve_text_backbone(run.contract["tokenizer"])).save_pretrained(str(folder))
    back = auto.from_pretrained(str(folder)).eval()
    ids, mask = example_inputs(run, CHECK_INPUTS)
    with torch.no_grad():
        ours = run.model(input_ids=ids, attention_mask=mask).logits
        theirs = back(input_ids=ids, attention_mask=mask).logits
    return {"file": "config.json + model.safetensors + tokenizer files", "checked_with":
            f"transformers.{auto.__name__}.from_pretrained", "max_abs_logit_diff": _max_diff(ours, theirs)}


def _export_hf(run: LoadedRun, folder: Path, inputs: tuple[torch.Tensor, ...], reference: torch.Tensor) -> dict:
    if run.kind in LANGUAGE_MODEL_KINDS:
        return _export_language_model(run, folder)
    if run.kind != "text":
        raise ExportError("--format hf is for text runs; export image runs as onnx, torchscript or safetensors")
    hf_model = getattr(run.model, "hf_model", None)
    if hf_model is None:
        raise ExportError("--format hf needs a run trained with Hugging Face's own head (task option pooling=hf, an "
                          f"AutoModelForSequenceClassification); this run pools with '{run.contract.get('pooling')}' "
                          "into domainadapt's head: export it as onnx, torchscript or safetensors")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf_model.config.id2label = dict(enumerate(run.classes))
    hf_model.config.label2id = {name: i for i, name in enumerate(run.classes)}
    hf_model.save_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(resolve_text_backbone(run.contract["tokenizer"]))
    tokenizer.save_pretrained(str(folder))
    back = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = back(input_ids=inputs[0], attention_mask=inputs[1]).logits
    return {"file": "config.json + model.safetensors + tokenizer files", "checked_with":
            "transformers.AutoModelForSequenceClassification.from_pretrained", "max_abs_logit_diff": _max_diff(reference, out)}


_EXPORTERS = {"onnx": _export_onnx, "torchscript": _export_torchscript, "safetensors": _export_safetensors,
              "hf": _export_hf}


def export_run(run_dir: str | os.PathLike, fmt: str, out: str | os.PathLike, *, atol: float = 1e-4,
               check_inputs: int = CHECK_INPUTS) -> dict[str, Any]:
    """Export the finished run in `run_dir` as `fmt` into the new folder `out`; returns the model card's content."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out).expanduser()
    if out.exists():
        raise ExportError(f"{out} already exists; choose a new folder (nothing was written)")
    run = load_run(run_dir)
    if run.kind in LANGUAGE_MODEL_KINDS and fmt != "hf":
        raise ExportError(f"a language-model run ({run.kind}) exports as --format hf (a Hugging Face model folder), "
                          f"not {fmt}")
    inputs = example_inputs(run, check_inputs)
    with torch.no_grad():
        reference = torch.zeros(()) if run.kind in LANGUAGE_MODEL_KINDS else _forward_module(run)(*inputs)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        with warnings.catch_warnings():  # the tracers' notes on Python control flow: the check below is the judge
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            check = _EXPORTERS[fmt](run, partial, inputs, reference)
        if check["max_abs_logit_diff"] > atol:
            raise ExportError(f"{fmt} export disagrees with PyTorch: max |Δ logit| = {check['max_abs_logit_diff']:.3g} "
                              f"on {check_inputs} inputs, above atol {atol:g}")
        card = model_card(run, fmt, check, check_inputs)
        atomic_write_json(partial / "model_card.json", card)
        atomic_write_text(partial / "MODEL_CARD.md", render_card(card))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, out)
    return card


def model_card(run: LoadedRun, fmt: str, check: dict[str, Any], n: int) -> dict[str, Any]:
    metrics = {k: v for k, v in run.result.get("metrics", {}).items() if isinstance(v, (int, float))}
    return {"run": str(run.run_dir), "format": fmt, "task": run.config.task, "method": run.config.method,
            "backbone": run.config.backbone, "source": run.config.source, "target": run.config.target,
            "classes": run.classes, "input": run.contract, "outputs": run.contract.get("outputs") or f"logits, "
            f"N×{len(run.classes)} (softmax: probabilities in the order of 'classes')", "metrics": metrics, "check": {**check, "inputs": n},
            "config": run.config.to_dict(), "versions": run.result.get("versions", {})}


def render_card(card: dict[str, Any]) -> str:
    """The card as Markdown for people; model_card.json holds the same for programs."""
    lines = [f"# {card['method']} · {card['backbone']} · {card['source']} → {card['target']}", "",
             f"Exported as **{card['format']}** from `{card['run']}` (task {card['task']}).", "",
             "## Input", ""]
    lines += [f"- {k}: {v}" for k, v in card["input"].items()]
    lines += ["", "## Output", "", f"- {card['outputs']}", f"- classes ({len(card['classes'])}): "
              + ", ".join(card["classes"][:50]) + (" …" if len(card["classes"]) > 50 else ""), "", "## Metrics", ""]
    lines += [f"- {k}: {v:.4g}" for k, v in sorted(card["metrics"].items())] or ["- (none recorded)"]
    check = card["check"]
    lines += ["", "## Check", "", f"- {check['checked_with']}: max |Δ logit| vs PyTorch = "
              f"{check['max_abs_logit_diff']:.3g} on {check['inputs']} random inputs", "", "## Config", "", "```json",
              json.dumps(card["config"], indent=1), "```", ""]
    return "\n".join(lines)
