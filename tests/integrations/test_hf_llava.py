"""MoIR on a tiny randomly initialised Hugging Face LLaVA (the optional ``vlm`` extra)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformers")

from mmrepro.integrations.hf_llava import attach_moir, tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


def inputs(model, n_text: int = 6):
    n_img = model.config.image_seq_length
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1, 90, (2, n_text), generator=g)
    ids = torch.cat([text[:, :2], torch.full((2, n_img), model.config.image_token_id), text[:, 2:]], 1)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # padding on the second sample
    pixels = torch.randn(2, 3, model.config.vision_config.image_size, model.config.vision_config.image_size, generator=g)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def embeds_seen(model, batch):
    seen = {}

    def record(_module, _args, kwargs):
        seen["x"] = kwargs["inputs_embeds"].detach().clone()

    hook = model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    with torch.no_grad():
        logits = model(**batch).logits
    hook.remove()
    return seen["x"], logits


def test_router_changes_ceil_r_d_channels_of_image_and_text(llava):
    batch = inputs(llava)
    before, logits0 = embeds_seen(llava, batch)
    handle = attach_moir(llava, ratio=0.25)
    after, logits1 = embeds_seen(llava, batch)
    handle.remove()
    k = math.ceil(0.25 * llava.config.text_config.hidden_size)
    image = batch["input_ids"] == llava.config.image_token_id
    text = batch["attention_mask"].bool() & ~image
    changed = after != before
    for n in range(2):
        assert changed[n][image[n]].any(0).sum() == k and changed[n][text[n]].any(0).sum() == k
    assert not changed[~batch["attention_mask"].bool()].any()
    assert not torch.allclose(logits0, logits1)
    assert torch.allclose(embeds_seen(llava, batch)[1], logits0)  # removed: the model is as before


def test_zero_gate_is_the_identity_and_gates_get_gradients(llava):
    batch = inputs(llava)
    _, logits0 = embeds_seen(llava, batch)
    handle = attach_moir(llava, gate_init=0.0, learn_gates=False)
    assert torch.allclose(embeds_seen(llava, batch)[1], logits0)
    handle.remove()
    handle = attach_moir(llava)
    llava(**batch).logits.sum().backward()
    assert handle.router.gate_logits.grad.abs().sum() > 0
    handle.remove()
    llava.zero_grad(set_to_none=True)


def test_default_text_mask_keeps_the_prompt_only():
    from mmrepro.integrations.hf_llava import prompt_mask

    ids = torch.tensor([[1, 5, 6, 7, 2, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, -100, 7, 2, -100]])
    assert prompt_mask(ids, attention, labels, (1, 2)).tolist() == [[False, True, True, False, False, False]]
    assert prompt_mask(ids, attention, None, (1, 2)).tolist() == [[False, True, True, True, False, False]]


def test_answer_tokens_are_never_routed_into_the_image(llava):
    batch = inputs(llava)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -1] = batch["input_ids"][:, -1]  # the last token is the teacher-forced answer
    handle = attach_moir(llava, ratio=0.25)
    routed = embeds_seen(llava, {**batch, "labels": labels})[0]
    other = batch["input_ids"].clone()
    other[:, -1] = (other[:, -1] + 1) % 90 + 3  # another answer: the image positions must not move
    moved = embeds_seen(llava, {**batch, "input_ids": other, "labels": labels})[0]
    image = batch["input_ids"] == llava.config.image_token_id
    torch.testing.assert_close(routed[image], moved[image])
    handle.remove()


def test_training_without_labels_is_refused_and_missing_ids_warn(llava):
    batch = inputs(llava)
    handle = attach_moir(llava)
    llava.train()
    try:
        with pytest.raises(ValueError, match="labels="):
            llava(**batch)
    finally:
        llava.eval()
    embeds = llava.get_input_embeddings()(batch["input_ids"].clamp_max(98))
    with pytest.warns(UserWarning, match="no input_ids"):
        llava(inputs_embeds=embeds, attention_mask=batch["attention_mask"])
    handle.remove()
