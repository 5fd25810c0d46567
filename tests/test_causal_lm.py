"""Causal-LM continued pretraining: the loss against Hugging Face's own, the task through the shared trainer, export."""

from __future__ import annotations

import pytest
import torch

from domainadapt.runs import check_inputs, run
from domainadapt.train import TrainConfig

from killing import run_killed_after
from text_fixtures import tiny_texts, tiny_tokenizer, write_dictd


def tiny_gpt2(vocab_size: int, seed: int = 0, pad_token_id: int = 0, bos_token_id: int = 2, eos_token_id: int = 3):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                      pad_token_id=pad_token_id, bos_token_id=bos_token_id,
                                      eos_token_id=eos_token_id)).eval()


def test_the_causal_lm_loss_equals_the_hf_models_labels_loss():
    from domainadapt.text.clm import causal_lm_loss, predicted_tokens

    model = tiny_gpt2(50)
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    ours = causal_lm_loss(model, ids, torch.ones_like(ids))
    theirs = model(input_ids=ids, labels=ids).loss
    assert abs(ours.item() - theirs.item()) < 1e-5
    # padding: positions with attention_mask 0 are not targets (HF: labels -100 there)
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    mask[2, 5:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    ours = causal_lm_loss(model, ids, mask)
    theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert abs(ours.item() - theirs.item()) < 1e-5
    total = causal_lm_loss(model, ids, mask, reduction="sum")
    assert int(predicted_tokens(ids, mask)) == 7 + 11 + 4
    assert abs(total.item() / 22 - ours.item()) < 1e-5
    # gradients too
    g_ours = torch.autograd.grad(causal_lm_loss(model, ids, mask), model.transformer.wte.weight)[0]
    g_theirs = torch.autograd.grad(model(input_ids=ids, attention_mask=mask, labels=labels).loss,
                                   model.transformer.wte.weight)[0]
    assert torch.allclose(g_ours, g_theirs, atol=1e-6)


@pytest.fixture(scope="module")
def clm_world(tmp_path_factory):
    from domainadapt.text.base_model import save_model_folder

    root = tmp_path_factory.mktemp("clm")
    subjects = {"networking": ("network", "sends", "packets", "over", "protocol", "the", "a"),
                "hardware": ("processor", "memory", "cache", "disk", "the", "a")}
    domain = [([f"{s[:4]}{k}"], f"{s[:4]}{k}\n\n   <{s}> {t}\n") for s, words in subjects.items()
              for k, t in enumerate(tiny_texts(120, seed=len(s), words=list(words)))]
    write_dictd(root / "dictd", "foldoc", domain)
    general_words = ("a", "cat", "sat", "on", "the", "mat", "dog", "ran", "to", "house", "tree", "green")
    general = [([f"w{k}"], f"w{k}\n\n   {t}\n") for k, t in enumerate(tiny_texts(200, seed=9, words=general_words))]
    write_dictd(root / "dictd", "gcide", general)
    tokenizer = tiny_tokenizer(tiny_texts(100, seed=3) + tiny_texts(100, seed=4, words=general_words), vocab_size=150)
    save_model_folder(root / "gpt2", tiny_gpt2(len(tokenizer), pad_token_id=tokenizer.pad_token_id), tokenizer)
    return root


@pytest.fixture()
def cworld(clm_world, monkeypatch):
    monkeypatch.setenv("DOMAINADAPT_DICTD_DIR", str(clm_world / "dictd"))
    from domainadapt.text import sources

    sources.clear_caches()
    yield clm_world
    sources.clear_caches()


def clm_config(world, **kw) -> TrainConfig:
    base = dict(task="causal_lm", method="causal_lm", backbone=str(world / "gpt2"), source="none",
                target="dictd:foldoc", task_kwargs={"block_size": 16, "general": "dictd:gcide", "heldout_blocks": 16},
                steps=30, batch_size=8, optimizer="adamw", lr=3e-3, weight_decay=0.0, progress=False,
                eval_batch_size=8, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_causal_dapt_lowers_the_domain_loss_and_reports_general_text(cworld, tmp_path):
    from domainadapt.inference import run_loop
    from domainadapt.tasks import get_task
    from domainadapt.tasks.causal_lm import CausalLMLoss

    config = clm_config(cworld)
    task = get_task("causal_lm")
    setup = task.build(config, task.options(config), None)
    assert set(setup.eval_sets) == {"domain_heldout", "general_heldout"}
    before = run_loop(setup.model, setup.eval_sets["domain_heldout"], CausalLMLoss(), device="cpu", batch_size=8)
    result = run(config, tmp_path / "clm")
    m = result["metrics"]
    # measured 5.03 → 3.36 on the domain (uniform over the 150-token vocabulary: ln 150 = 5.01; over its 26 words
    # ln 26 = 3.26); general text rose to 5.34
    assert m["domain_heldout/lm_loss"] < 0.7 * before["lm_loss"]
    assert abs(m["domain_heldout/perplexity"] - torch.exp(torch.tensor(m["domain_heldout/lm_loss"])).item()) < 1e-3
    assert m["general_heldout/lm_loss"] > m["domain_heldout/lm_loss"]  # it learned the domain, not general text
    assert result["sizes"]["target_train_blocks"] >= 8


def test_causal_dapt_with_ewc_and_a_killed_run_resumes_exactly(cworld, tmp_path, monkeypatch):
    from domainadapt.train.checkpoint import load_checkpoint

    config = clm_config(cworld, steps=4, checkpoint_every=2, regularizers={"ewc": {"lam": 10.0, "samples": 4}})
    run_killed_after(config, tmp_path / "killed", 3, monkeypatch)
    resumed = run(config, tmp_path / "killed")
    reference = run(config, tmp_path / "reference")
    a = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["modules"]
    b = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")["modules"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    assert resumed["metrics"] == reference["metrics"] and reference["metrics"]["train/ewc"] > 0


def test_a_causal_run_exports_as_a_hugging_face_folder(cworld, tmp_path):
    from transformers import AutoModelForCausalLM

    from domainadapt.deploy.export import ExportError, export_run

    run(clm_config(cworld, steps=3), tmp_path / "clm")
    card = export_run(tmp_path / "clm", "hf", tmp_path / "hf")
    assert card["check"]["max_abs_logit_diff"] < 1e-5 and card["input"]["kind"] == "causal_lm"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf").config.n_layer == 2
    with pytest.raises(ExportError, match="causal_lm"):
        export_run(tmp_path / "clm", "onnx", tmp_path / "onnx")


def test_the_causal_task_fails_early_on_bad_input(cworld):
    from domainadapt.text.sources import TextTaskError

    with pytest.raises(TextTaskError, match="method 'causal_lm'"):
        check_inputs(clm_config(cworld, method="masked_lm"))
    with pytest.raises(TextTaskError, match="causal LM backbone"):
        check_inputs(clm_config(cworld, backbone="digits_cnn"))
    with pytest.raises(TextTaskError, match="block_size"):
        check_inputs(clm_config(cworld, task_kwargs={"block_size": 1}))
    with pytest.raises(TextTaskError, match="unknown corpus"):
        check_inputs(clm_config(cworld, target="nonsense"))


def test_fine_tuning_from_a_causal_run_starts_from_its_decoder_body_and_learns_the_task(cworld, tmp_path):
    from domainadapt.tasks import get_task
    from domainadapt.train.checkpoint import load_checkpoint

    run(clm_config(cworld, steps=5), tmp_path / "clm")
    subject = {"num_classes": 2, "train_per_class": 6, "test_per_class": 6, "seed": 0}
    config = TrainConfig(task="text_classification", method="source_only", backbone=str(cworld / "gpt2"),
                         source="foldoc_subjects", target="foldoc_subjects", init_from=str(tmp_path / "clm"),
                         task_kwargs={"subject_task": subject, "max_length": 24}, steps=30, batch_size=6,
                         optimizer="adamw", lr=3e-3, weight_decay=0.0, progress=False, device="cpu")
    state = load_checkpoint(tmp_path / "clm" / "checkpoints" / "last.pt")
    task = get_task("text_classification")
    setup = task.build(config, task.options(config), state)
    assert torch.equal(setup.model.encoder.wte.weight, state["modules"]["model.transformer.wte.weight"])
    m = run(config, tmp_path / "ft")["metrics"]
    assert m["target_test/acc"] > 0.75  # two subjects with disjoint words: chance is 0.5
