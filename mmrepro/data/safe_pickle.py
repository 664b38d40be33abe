"""Read dataset pickles without running code from them.

``pickle.load`` runs whatever a file tells it to import and call, so a crafted
dataset file can execute arbitrary code.  ``load`` here only rebuilds NumPy arrays
and scalars, dicts, lists, tuples, strings and numbers; any other object in the file
is an error naming it.  The risk that remains is NumPy's own array reconstruction,
which does not execute code; use files from a source you trust all the same.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .download import DataError

#: (module, name) pairs a dataset pickle may reference: NumPy arrays, dtypes, scalars; latin-1 bytes
ALLOWED = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
})


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: dataset pickles may hold only NumPy "
                                         "arrays, dicts, lists, tuples, strings and numbers")
        return super().find_class(module, name)


def load(path: Path) -> Any:
    """The contents of a dataset pickle, or ``DataError`` naming the file and the object it refused."""
    try:
        with Path(path).open("rb") as handle:
            return _Restricted(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"cannot load {path} safely: {error}. Convert it to plain arrays and dicts, or check "
                        "where it came from") from error
