"""A measure defined outside the package, named by its path in a run spec (used by test_records)."""


def first_item(method, splits, scale: float = 1.0):
    """A toy measure: a run-level metric and a per-item score list."""
    return {"toy": scale}, {"toy_items": [scale] * len(splits.test)}
