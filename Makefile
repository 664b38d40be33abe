# The two set-up commands of the README:  make book   and   make test
# Both create .venv from requirements/lock.txt (the one place for pins) on first use.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
NB_DIR := _build/notebooks
# nbval keeps each notebook it executed here (tools/nbval_keep.py); the smoke site is rendered from them
KEPT_DIR := _build/executed
SMOKE_DIR := _build/smoke
# `make book` executes each chapter once (papermill, book profile) into BOOK_NB, then renders BOOK_DIR from them
BOOK_NB := _build/book-executed
BOOK_DIR := _build/book
# the leaderboard last: it cites the other chapters' saved verdicts (results/verdicts-<chapter>.csv)
ALL_CHAPTERS := $(filter-out leaderboard,$(basename $(notdir $(shell grep -l '^kernelspec:' book/*.md 2>/dev/null)))) leaderboard
CHAPTERS ?= $(ALL_CHAPTERS)
SHELL  := bash
export MMREPRO_PROGRESS ?= 0
# Notebooks must draw with the inline backend (ipykernel only picks it when MPLBACKEND is unset),
# so MPLBACKEND=Agg is set for the unit tests alone and removed for nbval and the site build.
NB_ENV := env -u MPLBACKEND
# pytest exits 5 when it collects no tests: that is reported, not a failure of the build.
ALLOW_EMPTY := rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), not an error"; else exit $$rc; fi

.PHONY: book records test venv unit nbval verify smoke-site lock clean

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(BIN)/.installed

## build the book: `make records` executes every chapter once at the book profile, then the site is rendered from
## those notebooks with execution off (no second execution) into _build/html and checked page by page
book: venv
	rm -rf $(BOOK_NB)
	$(MAKE) records
	$(BIN)/python tools/stage_site.py --notebooks $(BOOK_NB) --out $(BOOK_DIR)
	$(NB_ENV) $(BIN)/jupyter-book build $(BOOK_DIR) --warningiserror --keep-going
	rm -rf _build/html && mv $(BOOK_DIR)/_build/html _build/html
	$(BIN)/python tools/check_site.py _build/html --toc _toc.yml
	@echo "The book is at $(CURDIR)/_build/html/index.html"

## execute chapters (CHAPTERS="benchmark udml", default all) at the book profile with papermill, into $(BOOK_NB):
## runs with a current record load, missing ones train here with no cell timeout, each record written as its run
## ends (an interrupted recompute loses only the runs in flight; run it again to go on)
records: venv
	for c in $(CHAPTERS); do \
		[ -f book/$$c.md ] || { echo "records: no chapter book/$$c.md; chapters: $(ALL_CHAPTERS)"; exit 2; }; \
	done
	mkdir -p $(BOOK_NB)
	for c in $(CHAPTERS); do \
		echo "records: $$c"; \
		$(BIN)/jupytext --quiet --to ipynb --output $(BOOK_NB)/$$c.in.ipynb book/$$c.md || exit 1; \
		MMREPRO_PROFILE=book $(NB_ENV) $(BIN)/papermill --cwd book -k python3 --log-level WARNING --no-progress-bar \
			$(BOOK_NB)/$$c.in.ipynb $(BOOK_NB)/$$c.ipynb -p profile book || exit 1; \
		rm -f $(BOOK_NB)/$$c.in.ipynb; \
	done

## run the tests: unit tests, nbval on every chapter (smoke), a smoke site rendered from the notebooks nbval
## executed (each chapter runs once) and checked page by page
test: venv
	$(MAKE) unit nbval verify
	$(MAKE) smoke-site

unit: venv
	MPLBACKEND=Agg $(BIN)/python -m pytest -q --durations=5 tests || { $(ALLOW_EMPTY); }

nbval: venv
	rm -rf $(NB_DIR) $(KEPT_DIR) && mkdir -p $(NB_DIR)
	chapters=$$(grep -l '^kernelspec:' book/*.md 2>/dev/null || true); \
	if [ -z "$$chapters" ]; then echo "nbval: no notebook chapters in book/"; exit 0; fi; \
	for md in $$chapters; do \
		$(BIN)/jupytext --quiet --to ipynb --output $(NB_DIR)/$$(basename $$md .md).ipynb $$md || exit 1; \
	done
	MMREPRO_PROFILE=smoke $(NB_ENV) PYTHONPATH=$(CURDIR)/tools$${PYTHONPATH:+:$$PYTHONPATH} \
		$(BIN)/python -m pytest -q -p no:cacheprovider -p nbval_keep --nbval-lax --nbval-keep $(KEPT_DIR) $(NB_DIR) \
		|| { $(ALLOW_EMPTY); }

## re-derive one committed run record per chapter, picked at random, and fail if its metrics or per-item scores differ
verify: venv
	folders=$$(for d in results/*/; do ls $$d*.json >/dev/null 2>&1 && echo $$d; done); \
	if [ -z "$$folders" ]; then echo "verify: no run records committed yet"; exit 0; fi; \
	$(BIN)/python -m mmrepro.records verify $$folders

## the smoke site from the notebooks `make nbval` executed (no second execution), checked page by page
smoke-site: venv
	$(BIN)/python tools/stage_site.py --notebooks $(KEPT_DIR) --out $(SMOKE_DIR)
	$(NB_ENV) $(BIN)/jupyter-book build $(SMOKE_DIR) --warningiserror --keep-going
	$(BIN)/python tools/check_site.py $(SMOKE_DIR)/_build/html --toc _toc.yml

lock:
	rm -rf /tmp/mmrepro-lock && $(PYTHON) -m venv /tmp/mmrepro-lock
	/tmp/mmrepro-lock/bin/pip install -q --upgrade pip setuptools
	/tmp/mmrepro-lock/bin/pip install -q -e '.[book,test]'
	/tmp/mmrepro-lock/bin/pip freeze --all --exclude-editable | grep -v -E '^wheel==' > requirements/lock.body
	{ grep '^#' requirements/lock.txt; cat requirements/lock.body; } > requirements/lock.new && mv requirements/lock.new requirements/lock.txt && rm requirements/lock.body
	$(PYTHON) tools/sync_env.py

clean:
	rm -rf _build
