"""Shared helpers of the baseline tests: a hook context, a batch, gradients of a module."""

from __future__ import annotations

import torch

from mmrepro.train import Context, TrainConfig

CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)  # a few epochs on the four_classes fixture


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


def loss_before_and_after_a_step(method, b, c, lr: float = 0.1) -> tuple[float, float]:
    """The method's own training loss on batch ``b`` before and after one SGD step on it (``after_backward`` run)."""
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=lr)
    optimizer.zero_grad()
    loss = method.training_step(b, c).loss
    loss.backward()
    method.after_backward(c)
    optimizer.step()
    after = method.training_step(b, c).loss  # with grad: some methods take gradients inside their step
    return loss.item(), after.item()
