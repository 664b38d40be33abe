"""Fixtures of the method tests: a four-class toy on which a few epochs of training show each method's behaviour."""

from __future__ import annotations

import pytest

from mmrepro.data import make_synthetic


@pytest.fixture(scope="module")
def four_classes():
    """Four classes, m0 clearly more informative than m1; 256 training rows."""
    return make_synthetic(levels=(3.0, 1.0), dim=8, num_classes=4, sizes=(256, 96, 64), seed=0)
