"""A small token-level vision-language model: the stand-in for a LLaVA-style VLM.

It keeps the shape that matters to MoIR: each modality becomes a token
sequence of one common width (image patches from a small conv patchifier
through an encoder and a projector; spectrogram frames the same way; prompt tokens through an
embedding lookup), an optional router may rewrite the two streams, and a
small transformer "reasoner" reads them.  Two reasoners: the bidirectional
one reads [CLS ; stream a ; stream b] and predicts from CLS; the causal one
(``causal=True``, the LLaVA layout) reads [stream a ; stream b] under a
causal mask, so image tokens cannot see the prompt, and predicts from the
last valid position (the next-token logits restricted to the answers).  A
stream missing from the batch is simply absent, so the unimodal logits are
the reasoner run on one stream alone (the router idle), and the readout's
attention mass on each stream is returned as ``Output.weights``.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Literal, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Batch, Splits
from .multimodal import Output

Stream = Literal["patches", "frames", "tokens"]
STREAMS = ("patches", "frames", "tokens")
Tokens = tuple[Tensor, Tensor]  # (B, T, D) tokens and their (B, T) validity mask


def _positions(n: int, dim: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(1, n, dim) * 0.02)


class ContinuousStream(nn.Module):
    """Tokenise a tensor, embed, add positions, encode (``layers`` transformer layers), project to ``dim``."""

    def __init__(self, tokenize: Callable[[Tensor], Tensor], in_dim: int, n_tokens: int, dim: int,
                 layers: int = 1, heads: int = 4, stem: nn.Module | None = None):
        super().__init__()
        self.tokenize = tokenize
        self.stem = stem  # registers the tokeniser's parameters, if it has any
        self.embed = nn.Linear(in_dim, dim)
        self.pos = _positions(n_tokens, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else nn.Identity()
        self.projector = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tokens:
        tokens = self.projector(self.encoder(self.embed(self.tokenize(x)) + self.pos))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


def patch_stream(shape: tuple[int, ...], dim: int, side: int = 4, layers: int = 1, heads: int = 4) -> ContinuousStream:
    """Image (C, H, W) -> a ``side`` x ``side`` grid of patch tokens from a two-conv stem (a hybrid-ViT patchifier)."""
    c, h, w = shape
    if min(h, w) < 4 * side:
        raise ValueError(f"an image of {h}x{w} is too small for a {side}x{side} token grid (needs >= {4 * side})")
    stem = nn.Sequential(nn.Conv2d(c, 16, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(16, dim, 3, stride=2, padding=1),
                         nn.GELU(), nn.AdaptiveAvgPool2d(side), nn.Flatten(2))
    return ContinuousStream(lambda x: stem(x).transpose(1, 2), dim, side * side, dim, layers, heads, stem)


def frame_stream(shape: tuple[int, ...], dim: int, group: int = 4, layers: int = 1, heads: int = 4) -> ContinuousStream:
    """Spectrogram (C, F, T) -> one token per ``group`` consecutive frames (a speech-encoder stand-in)."""
    c, f, t = shape
    if t % group:
        raise ValueError(f"frame group {group} must divide the number of frames {t}")
    return ContinuousStream(lambda x: x.permute(0, 3, 1, 2).reshape(x.shape[0], t // group, group * c * f),
                            group * c * f, t // group, dim, layers, heads)


class TextStream(nn.Module):
    """Prompt token ids (L,) -> embeddings plus positions; ``pad_id`` marks padding (masked)."""

    def __init__(self, vocab_size: int, length: int, dim: int, pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.pos = _positions(length, dim)
        self.pad_id = pad_id

    def forward(self, ids: Tensor) -> Tokens:
        mask = ids != self.pad_id
        return (self.embed(ids) + self.pos[:, : ids.shape[1]]) * mask.unsqueeze(-1), mask


class Block(nn.Module):
    """Pre-norm transformer block that also returns its attention map (B, T, T), mean over heads."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, ignore: Tensor, attention: bool = True,
                blocked: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``ignore`` (B, T) marks padded keys; ``blocked`` (B, T, T), if given, replaces it: the keys each
        query may not see."""
        h = self.norm1(x)
        mask = None if blocked is None else blocked.repeat_interleave(self.attn.num_heads, 0)
        a, w = self.attn(h, h, h, key_padding_mask=None if blocked is not None else ignore, attn_mask=mask,
                         need_weights=attention, average_attn_weights=True)
        x = x + a
        return x + self.mlp(self.norm2(x)), w


class TokenModel(nn.Module):
    """streams -> (router) -> [CLS ;] tokens of each stream + type embedding -> reasoner -> head.

    It fuses inside the reasoner and has no separate fusion head: its ``name`` ("token") stands for one.
    ``causal`` picks the causal reasoner (no CLS, readout at the last valid token); ``routing`` switches
    the router off without removing it (a baseline trained before the router is plugged in).
    """

    name: ClassVar[str] = "token"

    def __init__(self, streams: Mapping[str, nn.Module], num_classes: int, dim: int = 32, depth: int = 2,
                 heads: int = 4, router: nn.Module | None = None, causal: bool = False):
        super().__init__()
        if router is not None and len(streams) != 2:
            raise ValueError(f"a router joins exactly two streams, got {list(streams)}")
        self.streams = nn.ModuleDict(dict(streams))
        self.router = router
        self.routing = True
        self.causal = causal
        self.cls = None if causal else _positions(1, dim)
        self.type_embed = nn.Parameter(torch.randn(len(streams), dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.num_classes = num_classes

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.streams)

    def tokens(self, batch: Batch, keep: Mapping[str, Tensor] | None = None) -> dict[str, Tokens]:
        """Each present stream's tokens and mask; ``keep[m]`` (B,) switches a stream off per sample."""
        present = [m for m in self.streams if m in batch]
        if not present:
            raise KeyError(f"the batch has none of this model's streams {list(self.streams)}; it has {sorted(batch)}")
        out = {}
        for m in present:
            x, mask = self.streams[m](batch[m])
            out[m] = (x, mask & keep[m].unsqueeze(1)) if keep is not None and m in keep else (x, mask)
        return out

    def route(self, toks: dict[str, Tokens]) -> dict[str, Tokens]:
        """The router on the two streams (identity if there is none, it is off, or only one stream is present)."""
        if self.router is None or not self.routing or len(toks) < 2:
            return toks
        (a, (xa, ma)), (b, (xb, mb)) = toks.items()
        ya, yb, ma, mb = self.router(xa, xb, ma, mb)
        return {a: (ya, ma), b: (yb, mb)}

    def reason(self, toks: dict[str, Tokens], attention: bool = True) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Logits from the readout (CLS, or the last valid token when causal), and the readout's attention
        share of each stream (mean over layers and heads)."""
        names = list(toks)
        index = {m: i for i, m in enumerate(self.streams)}
        first = toks[names[0]][0]
        x = torch.cat([toks[m][0] + self.type_embed[index[m]] for m in names], 1)
        valid = torch.cat([toks[m][1] for m in names], 1)
        if not self.causal:
            x = torch.cat([self.cls.expand(first.shape[0], -1, -1).to(first.dtype), x], 1)
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
        readout = last_valid(valid) if self.causal else torch.zeros_like(valid[:, 0], dtype=torch.long)
        blocked = causal_mask(valid) if self.causal else None
        rows = torch.arange(x.shape[0], device=x.device)
        seen = 0
        for block in self.blocks:
            x, w = block(x, ~valid, attention, blocked)
            seen = seen + w[rows, readout] if attention else seen
        logits = self.head(self.norm(x[rows, readout]))
        if not attention:
            return logits, None
        mass, start = {}, 0 if self.causal else 1
        for m in names:
            length = toks[m][0].shape[1]
            mass[m] = seen[:, start:start + length].sum(1)
            start += length
        total = sum(mass.values()).clamp_min(1e-12)
        return logits, {m: v / total for m, v in mass.items()}

    def forward(self, batch: Batch, keep: Mapping[str, Tensor] | None = None, unimodal: bool = True) -> Output:
        """The full output; ``unimodal=False`` (training) skips the unimodal passes and the attention shares."""
        raw = self.tokens(batch, keep)
        routed = self.route(raw)
        logits, share = self.reason(routed, attention=unimodal)
        if unimodal and len(raw) > 1:
            uni = {m: self.reason({m: raw[m]}, attention=False)[0] for m in raw}
        else:
            uni = {m: logits for m in raw}
        features = {m: (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1) for m, (x, mask) in routed.items()}
        return Output(logits, uni, features, share)


def causal_mask(valid: Tensor) -> Tensor:
    """(B, T, T) keys hidden from each query: later positions and padding, except the query itself (so
    a padded query, whose output is never read, has a key and no NaN)."""
    n = valid.shape[1]
    future = torch.ones(n, n, dtype=torch.bool, device=valid.device).triu(1)
    blocked = future.unsqueeze(0) | ~valid.unsqueeze(1)
    return blocked & ~torch.eye(n, dtype=torch.bool, device=valid.device)


def last_valid(valid: Tensor) -> Tensor:
    """Index of each row's last True entry (B,): the causal readout position; 0 for a row with none."""
    positions = torch.arange(valid.shape[1], device=valid.device)
    return (valid * positions).amax(1)


def build_token_model(splits: Splits, dim: int = 32, depth: int = 2, heads: int = 4,
                      kinds: Mapping[str, Stream] | None = None, patch_side: int = 4, frame_group: int = 4,
                      encoder_layers: int = 1, router: nn.Module | None = None, causal: bool = False) -> TokenModel:
    """A ``TokenModel`` for ``splits``: integer modalities become text streams (vocabulary from
    ``splits.info["vocab_size"]``), a (C, H, W) modality named like "audio" becomes frames, others patches."""
    streams: dict[str, nn.Module] = {}
    for m, shape in splits.input_shapes().items():
        dtype = splits.train.tensors[m].dtype
        kind = (kinds or {}).get(m) or ("tokens" if not dtype.is_floating_point else "frames" if "audio" in m else "patches")
        if kind not in STREAMS:
            raise ValueError(f"unknown stream kind {kind!r} for {m!r}; valid: {', '.join(STREAMS)}")
        if kind == "tokens":
            if "vocab_size" not in splits.info:
                raise KeyError(f"token stream {m!r} needs splits.info['vocab_size']; info has {sorted(splits.info)}")
            streams[m] = TextStream(splits.info["vocab_size"], shape[0], dim, splits.info.get("pad_id", 0))
        elif kind == "frames":
            streams[m] = frame_stream(shape, dim, frame_group, encoder_layers, heads)
        else:
            streams[m] = patch_stream(shape, dim, patch_side, encoder_layers, heads)
    return TokenModel(streams, splits.num_classes, dim, depth, heads, router, causal)
