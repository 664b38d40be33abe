"""The token model: frame streams, the causal mask and the causal reasoner's read-out."""

from __future__ import annotations

import pytest
import torch

from mmrepro.data.core import DictDataset, Splits
from mmrepro.methods.moir import MoIRRouter
from mmrepro.models.token_model import build_token_model

from token_data import toy_splits


def test_frame_stream_and_bad_stream_kind():
    g = torch.Generator().manual_seed(0)
    ds = DictDataset({"image": torch.rand(6, 1, 28, 28, generator=g), "audio": torch.randn(6, 1, 32, 32, generator=g),
                      "label": torch.arange(6)}, ("image", "audio"))
    splits = Splits("toy", ds, ds, ds, 10)
    model = build_token_model(splits, dim=16, router=MoIRRouter(16))
    toks = model.tokens(ds.tensors)
    assert toks["image"][0].shape == (6, 16, 16) and toks["audio"][0].shape == (6, 8, 16)
    assert model(ds.tensors).logits.shape == (6, 10)
    with pytest.raises(ValueError, match="stream kind"):
        build_token_model(splits, kinds={"audio": "words"})


def test_causal_mask_hides_later_keys_and_padding_but_never_the_query_itself():
    from mmrepro.models.token_model import causal_mask, last_valid

    valid = torch.tensor([[True, True, False]])
    expected = torch.tensor([[[False, True, True], [False, False, True], [False, False, False]]])
    assert torch.equal(causal_mask(valid), expected)
    assert last_valid(torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)).tolist() == [1, 3]


def test_causal_reasoner_reads_the_last_valid_token_and_image_tokens_cannot_see_the_prompt():
    splits = toy_splits()
    torch.manual_seed(0)
    model = build_token_model(splits, dim=16, causal=True).eval()
    batch = splits.test.batch(range(8))
    out = model(batch)
    torch.testing.assert_close(out.weights["image"] + out.weights["text"], torch.ones(8))
    toks = model.tokens(batch)
    hidden = {}
    model.blocks[-1].register_forward_hook(lambda _m, _a, res: hidden.update(x=res[0]))
    model.reason(toks)
    first = hidden["x"][:, :16].clone()
    other = {**batch, "text": torch.roll(batch["text"], 1, 0)}
    model.reason(model.tokens(other))
    torch.testing.assert_close(hidden["x"][:, :16], first)  # image positions come first and see only images
    assert not torch.allclose(model(other).logits, out.logits)
