"""MoIR inside a Hugging Face LLaVA-style model (the optional ``vlm`` extra: ``transformers``).

``attach_moir(model)`` puts a ``MoIRRouter`` on the language model's input
embeddings: after the vision tower and projector have filled the image
placeholders, and before the first decoder layer.  Modality a is the image
positions (``input_ids == config.image_token_id``), modality b the prompt:
by default the attended non-image tokens that are neither special tokens
(BOS, EOS, padding) nor supervised answer positions (``labels != -100``), so
teacher-forced answers never leak into the image positions (the spec's
ambiguity A5); ``text_mask_fn(input_ids, attention_mask)`` replaces that
rule.  In training mode the default refuses a call without ``labels`` (it
could not tell the answer apart).  Routing happens on the prefill pass only
(a decoding step has no image tokens); a call without ``input_ids`` cannot
locate the image and warns that it was not routed.  The router is registered
as ``model.moir_router``, so its gates train and save with the model.
Nothing here downloads weights: bring your own checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import warnings

import torch
from torch import Tensor, nn

from ..methods.moir import MoIRRouter

TextMaskFn = Callable[[Tensor, Tensor], Tensor]
IGNORE_INDEX = -100  # the label of a position that carries no loss (the prompt)


def _llava_parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The module that owns ``language_model`` (LlavaModel) and the language model itself."""
    inner = model.model if hasattr(model, "model") and hasattr(model.model, "language_model") else model
    if not hasattr(inner, "language_model") or not hasattr(inner, "config"):
        raise TypeError(f"{type(model).__name__} does not look like a LLaVA-style model "
                        f"(no .language_model); expected e.g. transformers.LlavaForConditionalGeneration")
    return inner, inner.language_model


def prompt_mask(input_ids: Tensor, attention: Tensor, labels: Tensor | None, special: tuple[int, ...]) -> Tensor:
    """The prompt positions: attended, not special, and not supervised (``labels`` = IGNORE_INDEX)."""
    mask = attention.bool() & ~torch.isin(input_ids, torch.tensor(special, device=input_ids.device))
    return mask if labels is None else mask & (labels == IGNORE_INDEX)


def _special_ids(config: Any) -> tuple[int, ...]:
    text = config.text_config
    return tuple(int(i) for i in (text.bos_token_id, text.eos_token_id, text.pad_token_id) if i is not None)


@dataclass
class MoIRHandle:
    """The attached router and its hooks; ``remove()`` restores the original model."""

    router: MoIRRouter
    model: nn.Module
    hooks: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        if getattr(self.model, "moir_router", None) is self.router:
            del self.model.moir_router


def attach_moir(model: nn.Module, text_mask_fn: TextMaskFn | None = None, **router_kwargs: Any) -> MoIRHandle:
    """Route information between image and text embeddings of a LLaVA-style model (returns a handle)."""
    if router_kwargs.get("inject", "blend") != "blend":
        raise ValueError(f"inside a VLM the router must keep the sequence length: inject='blend', got {router_kwargs['inject']!r}")
    inner, language_model = _llava_parts(model)
    config = inner.config
    dim = config.text_config.hidden_size
    router = MoIRRouter(dim, **router_kwargs)
    param = next(model.parameters())
    router.to(param.device)
    model.add_module("moir_router", router)
    state: dict[str, Tensor | None] = {"input_ids": None, "attention_mask": None, "labels": None}
    special = _special_ids(config)

    def capture(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        state["input_ids"] = kwargs.get("input_ids", args[0] if args else None)
        state["attention_mask"], state["labels"] = kwargs.get("attention_mask"), kwargs.get("labels")
        if text_mask_fn is None and model.training and state["labels"] is None:
            raise ValueError("training with MoIR's default prompt mask needs labels= (IGNORE_INDEX on the prompt), "
                             "so that answer tokens are not routed into the image; or pass text_mask_fn")

    def route(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        ids, embeds = state["input_ids"], kwargs.get("inputs_embeds")
        if ids is None:
            warnings.warn("MoIR: the call has no input_ids, so the image positions are unknown and nothing was "
                          "routed; pass input_ids (with pixel_values) instead of inputs_embeds", stacklevel=2)
            return None
        if embeds is None or ids.shape != embeds.shape[:2]:
            return None
        image = ids == config.image_token_id
        if not image.any():
            return None
        attention = state["attention_mask"]
        attention = torch.ones_like(ids, dtype=torch.bool) if attention is None else attention.bool()
        chosen = prompt_mask(ids, attention, state["labels"], special) if text_mask_fn is None \
            else text_mask_fn(ids, attention)
        text = chosen & attention & ~image
        ya, yb, _, _ = router(embeds, embeds, image & attention, text)
        kwargs["inputs_embeds"] = torch.where(image.unsqueeze(-1), ya, yb)
        return args, kwargs

    handle = MoIRHandle(router, model)
    handle.hooks.append(model.register_forward_pre_hook(capture, with_kwargs=True))
    handle.hooks.append(language_model.register_forward_pre_hook(route, with_kwargs=True))
    return handle


def tiny_llava(seed: int = 0, image_size: int = 30, patch: int = 6, hidden: int = 32) -> nn.Module:
    """A randomly initialised, few-kilobyte LLaVA (CLIP vision tower + Llama) for tests; no download."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                              num_attention_heads=4, image_size=image_size, patch_size=patch)
    text = LlamaConfig(vocab_size=100, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=99,
                         image_seq_length=(image_size // patch) ** 2, vision_feature_layer=-1,
                         vision_feature_select_strategy="default")
    return LlavaForConditionalGeneration(config).eval()
