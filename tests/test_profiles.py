"""The run profiles: picking a value per profile, the current profile, and size tables."""

from __future__ import annotations

import pytest

from mmrepro import profiles


def test_profiles(monkeypatch):
    assert profiles.pick("book", smoke=1, book=2, full=3) == 2
    with pytest.raises(ValueError) as err:
        profiles.pick("huge", smoke=1, book=2, full=3)
    assert "huge" in str(err.value) and all(p in str(err.value) for p in profiles.PROFILES)
    monkeypatch.setenv("MMREPRO_PROFILE", "full")
    assert profiles.current() == "full"
    monkeypatch.delenv("MMREPRO_PROFILE")
    assert profiles.current() == "smoke"


def test_sizes_read_one_dict_per_profile_and_reject_uneven_tables():
    table = dict(smoke=dict(epochs=1, seeds=[0]), book=dict(epochs=5, seeds=[0, 1]), full=dict(epochs=40, seeds=[0, 1]))
    size = profiles.sizes("book", **table)
    assert (size.epochs, size.seeds) == (5, [0, 1])
    with pytest.raises(ValueError, match=r"missing \{'full': \['seeds'\]\}"):
        profiles.sizes("book", **{**table, "full": dict(epochs=40)})
    with pytest.raises(ValueError, match="one dict per profile"):
        profiles.sizes("book", smoke=table["smoke"], book=table["book"])
    with pytest.raises(ValueError, match="huge"):
        profiles.sizes("huge", **table)
