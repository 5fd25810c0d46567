"""Which fixed part of a corpus a document belongs to, decided by a hash of its text (the same in every run).

    heldout  1 in HELDOUT_EVERY documents of every corpus: never trained on; the held-out losses
    control  1 in CONTROL_EVERY of the rest of the general text: never seen by a base model built here
             (`experiments/pretrain_base.py`); the ¬DAPT row's pretraining text
    base     the remainder: a base model's pretraining text (and its tokenizer's)

MD5 is used as a fixed, portable hash (not for security); its first byte picks heldout and its second control, so
the two choices are independent.
"""

from __future__ import annotations

import hashlib

HELDOUT_EVERY = 20  # one document in 20 (by a hash of its text) is held out of every training corpus
CONTROL_EVERY = 4
PARTS = ("base", "control", "heldout")


def _digest(text: str) -> bytes:
    return hashlib.md5(text.encode("utf-8")).digest()


def is_heldout(text: str) -> bool:
    """A fixed 1-in-HELDOUT_EVERY choice of documents, the same in every run and corpus."""
    return _digest(text)[0] % HELDOUT_EVERY == 0


def document_part(text: str) -> str:
    """"heldout", "control" or "base" (see the module docstring)."""
    digest = _digest(text)
    if digest[0] % HELDOUT_EVERY == 0:
        return "heldout"
    return "control" if digest[1] % CONTROL_EVERY == 0 else "base"
