"""Schema fuzzing: schemathesis reads the server's own OpenAPI document, generates valid and invalid
requests for every route (then sequences of them) and sends them to the real server on loopback. No
answer may be a server error other than the documented 503, or break its documented schema.

CI sends SNAPSOURCE_FUZZ_EXAMPLES (default 30) examples per operation and phase; `make fuzz` sends
1000. What the run printed is kept in build/fuzz/, with a JUnit report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, luma_offers, write_catalog
from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources
from snapsource.tools.loopback import serve

EXAMPLES = int(os.environ.get("SNAPSOURCE_FUZZ_EXAMPLES", "30"))
CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"
ADMIN_KEY = "fuzz-admin-key"


def test_every_route_answers_within_its_schema(tmp_path):
    # a server of its own: the fuzzer creates and revokes tokens
    resources = Resources.open(Settings.load(environ={}, data_dir=tmp_path / "data", admin_key=ADMIN_KEY))
    ingest(resources, write_catalog(tmp_path / "catalog.jsonl", luma_offers()[:12]))
    token = resources.tokens.create("fuzz")
    out = ROOT / "build" / "fuzz"
    out.mkdir(parents=True, exist_ok=True)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "SNAPSOURCE_FUZZ_TOKEN": token, "SNAPSOURCE_FUZZ_ADMIN_KEY": ADMIN_KEY}
    with serve(create_app(resources=resources)) as url:
        run = subprocess.run(
            [str(schemathesis), "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
             "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1", "--no-color",
             "--report", "junit", "--report-junit-path", str(out / "junit.xml")],
            env=env, capture_output=True, text=True, timeout=900 if EXAMPLES <= 100 else 7200,
        )  # fmt: skip
    (out / "output.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    operations = sum(len(methods) for methods in create_app(resources=resources).openapi()["paths"].values())
    assert generated and generated[1] == generated[2] and int(generated[1]) >= operations * EXAMPLES, run.stdout[-3000:]
    assert f"Selected: {operations}/{operations}" in run.stdout  # every route of the document was fuzzed
    print(f"schemathesis: {generated[1]} requests generated, all passed")
