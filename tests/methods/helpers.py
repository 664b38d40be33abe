"""Shared helpers of the baseline tests: a hook context, a batch, gradients of a module."""

from __future__ import annotations

import torch

from mmrepro.train import Context


def ctx(epoch: int = 0, splits=None, seed: int = 0) -> Context:
    """A one-process hook context at ``epoch`` (the real one: its all_reduce is a no-op)."""
    context = Context.local(splits, seed=seed)
    context.epoch = epoch
    return context


def batch(splits, n: int = 48):
    return splits.train.batch(range(n))


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def backward(method, b, c) -> dict[str, torch.Tensor]:
    """Run one training step's backward and ``after_backward``; return the gradients before and after it."""
    method.zero_grad(set_to_none=True)
    method.training_step(b, c).loss.backward()
    before = grads(method)
    method.after_backward(c)
    return before, grads(method)
