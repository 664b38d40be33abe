"""Stage the book with the notebooks nbval already executed, so the smoke site is built without executing again.

Usage: ``python tools/stage_site.py --notebooks _build/executed --out _build/smoke`` then
``jupyter-book build _build/smoke`` and ``python tools/check_site.py _build/smoke/_build/html --toc _toc.yml``.

The staged folder holds the table of contents, the configuration with notebook execution off, every page of
``book/`` (a notebook chapter, i.e. MyST Markdown with a ``kernelspec``, replaced by its executed notebook from
``--notebooks``, which must exist), and links to the repository's other top-level folders (``mmrepro/`` for the
chapters' ``literalinclude``).  Links between pages that point at a chapter's ``.md`` point at its ``.ipynb``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGED_CONFIG = ("_config.yml", "_toc.yml")
NOT_LINKED = {"_build", "book", *STAGED_CONFIG}
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
LOCAL_MD_LINK = re.compile(r"\]\((?![a-z]+:)([^)\s#]+)\.md((?:#[^)\s]*)?)\)")


def is_notebook_chapter(path: Path) -> bool:
    """A MyST Markdown page with a ``kernelspec`` in its front matter (a page nbval executes)."""
    front = FRONT_MATTER.match(path.read_text(encoding="utf-8"))
    return bool(front and re.search(r"^kernelspec:", front.group(1), re.MULTILINE))


def point_links_at_notebooks(text: str, notebooks: set[str]) -> str:
    """``[x](name.md#part)`` becomes ``[x](name.ipynb#part)`` when ``name`` is a staged notebook chapter."""
    def swap(match: re.Match) -> str:
        target, anchor = match.group(1), match.group(2)
        suffix = ".ipynb" if Path(target).name in notebooks else ".md"
        return f"]({target}{suffix}{anchor})"
    return LOCAL_MD_LINK.sub(swap, text)


def staged_config(config: dict) -> dict:
    """The book's configuration with execution off and notebooks no longer excluded."""
    config = {**config, "execute": {**config.get("execute", {}), "execute_notebooks": "off"}}
    config["exclude_patterns"] = [p for p in config.get("exclude_patterns", []) if not p.endswith(".ipynb")]
    return config


def stage(notebooks: Path, out: Path, root: Path = ROOT) -> list[str]:
    """Build the staged folder ``out``; the names of the chapters taken from ``notebooks``."""
    book = root / "book"
    chapters = {p.stem for p in book.rglob("*.md") if is_notebook_chapter(p)}
    missing = sorted(c for c in chapters if not (notebooks / f"{c}.ipynb").is_file())
    if missing:
        raise FileNotFoundError(f"no executed notebook in {notebooks} for {', '.join(missing)}; "
                                "execute the chapters first (make nbval, or make records at the book profile)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    (out / "_config.yml").write_text(yaml.safe_dump(staged_config(config), sort_keys=False), encoding="utf-8")
    shutil.copy2(root / "_toc.yml", out / "_toc.yml")
    for source in sorted(book.rglob("*")):
        if source.is_dir() or source.suffix == ".ipynb":
            continue
        target = out / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".md" and source.stem in chapters:
            _stage_notebook(notebooks / f"{source.stem}.ipynb", target.with_suffix(".ipynb"), chapters)
        elif source.suffix == ".md":
            target.write_text(point_links_at_notebooks(source.read_text(encoding="utf-8"), chapters), encoding="utf-8")
        else:
            shutil.copy2(source, target)
    for entry in sorted(root.iterdir()):
        if entry.name not in NOT_LINKED and not entry.name.startswith("."):
            (out / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return sorted(chapters)


def _stage_notebook(source: Path, target: Path, chapters: set[str]) -> None:
    """Copy an executed notebook, its markdown cells' chapter links pointed at the notebooks."""
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = point_links_at_notebooks(cell.source, chapters)
    if not any(c.cell_type == "code" and c.get("outputs") for c in notebook.cells):
        raise ValueError(f"{source} has no cell outputs: it was not executed (make nbval or make records)")
    nbformat.write(notebook, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", type=Path, required=True, help="the executed notebooks (nbval --nbval-keep)")
    parser.add_argument("--out", type=Path, required=True, help="the staged book folder to create (replaced)")
    args = parser.parse_args(argv)
    try:
        chapters = stage(args.notebooks, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"stage_site: {err}", file=sys.stderr)
        return 1
    print(f"stage_site: {len(chapters)} executed chapters staged in {args.out}, notebook execution off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
