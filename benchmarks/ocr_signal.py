"""Does reading the label pay, and what does it cost? (issue 23, part A, stage 1: offline only)

Reads the text of photos with rapidocr-onnxruntime (PP-OCR detection and recognition, the models
inside its wheel, run by onnxruntime) and simulates a text score fused into today's rankings:

1. `collect`: the eval catalogs imported into --data (as `snapsource eval` does), then for each
   grocery query and each edits query (the first --edits-offers luma offers, all eight edits):
   today's ranking (item_id, score) and the text read inside the searched box; the text of the
   grocery catalog photos and of the luma offers' main photos (what photo text at import would
   store). Each read is timed. Everything lands in --out/collect.json; a rerun reuses it.
2. `timing`: ms per photo with 1 and 2 onnxruntime threads on a sample (grocery queries, grocery
   catalog photos, luma photos), median and p90.
3. `fuse`: text as character n-grams (3-grams of lower-cased, accent-folded words; CJK as
   characters and character pairs), weighted by OCR confidence and IDF over the catalog's
   documents (titles, plus photo texts in that variant). A candidate whose title (or photo text)
   shares n-grams with the query's text gains `weight * cosine`; one without text keeps its
   score. R@1/R@10 per variant for grocery packaged, loose, overall and edits.

    .venv/bin/python benchmarks/ocr_signal.py collect timing fuse
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import statistics
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from snapsource import search
from snapsource.config import Settings
from snapsource.ingest import IngestReport, ingest, iter_rows, local_path
from snapsource.ingest.rows import JsonLines
from snapsource.resources import Resources
from snapsource.search import queries
from snapsource.tools import evaluate

MAX_SIDE = 640  # photos are downscaled to this before reading
DET_MIN_SIDE = 480  # PP-OCR detection input: the shorter side brought to this
MIN_CONFIDENCE = 0.5  # lines read with less are dropped
CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def engine(threads: int, det_side: int = DET_MIN_SIDE):
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(
        intra_op_num_threads=threads,
        inter_op_num_threads=1,
        det_limit_side_len=det_side,
        det_limit_type="min",
        use_cls=False,
    )


def read(ocr, img: Image.Image) -> tuple[list[tuple[str, float]], float]:
    """The lines read in a photo, with their confidence, and the ms it took (downscale included)."""
    started = time.perf_counter()
    img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    result, _ = ocr(np.asarray(img)[:, :, ::-1])
    lines = [(str(text), round(float(conf), 3)) for _, text, conf in result or [] if float(conf) >= MIN_CONFIDENCE]
    return lines, 1000 * (time.perf_counter() - started)


def opened(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


# n-grams ------------------------------------------------------------------------------------------
def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def grams(text: str) -> set[str]:
    out: set[str] = set()
    for word in re.findall(r"\w+", fold(text)):
        if CJK.search(word):
            chars = [c for c in word if CJK.match(c)]
            out.update(chars)
            out.update(a + b for a, b in zip(chars, chars[1:]))
        elif len(word) >= 2:
            padded = f" {word} "
            out.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return out


def weighted(lines: list[tuple[str, float]]) -> dict[str, float]:
    """Each n-gram of the lines read, weighted by the best confidence it was read with."""
    out: dict[str, float] = {}
    for text, conf in lines:
        for g in grams(text):
            out[g] = max(out.get(g, 0.0), conf)
    return out


class Texts:
    """The catalog's documents (per offer: title, and photo text when used) and their IDF."""

    def __init__(self, titles: dict[int, str], photo: dict[int, list[tuple[str, float]]] | None) -> None:
        self.title = {i: weighted([(t, 1.0)]) for i, t in titles.items()}
        self.photo = {i: weighted(lines) for i, lines in (photo or {}).items()}
        df: Counter[str] = Counter()
        for i in titles:
            df.update(set(self.title[i]) | set(self.photo.get(i, {})))
        n = len(titles)
        self.idf = {g: math.log((n + 1) / (c + 1)) for g, c in df.items()}
        self.norm = {key: self._norms(docs) for key, docs in (("title", self.title), ("photo", self.photo))}

    def _norms(self, docs: dict[int, dict[str, float]]) -> dict[int, float]:
        return {i: math.sqrt(sum((w * self.idf[g]) ** 2 for g, w in d.items())) for i, d in docs.items()}

    def scores(self, query: dict[str, float], item_ids: list[int]) -> dict[int, tuple[float, float]]:
        """Cosine of the query's and each offer's idf-weighted n-grams: (title, photo text)."""
        q = {g: w * self.idf[g] for g, w in query.items() if self.idf.get(g, 0.0) > 0}
        qn = math.sqrt(sum(v * v for v in q.values()))
        out = {}
        if not qn:
            return out
        for i in item_ids:
            pair = []
            for key, docs in (("title", self.title), ("photo", self.photo)):
                d = docs.get(i)
                dn = self.norm[key].get(i, 0.0)
                if not d or not dn:
                    pair.append(0.0)
                    continue
                dot = sum(v * d[g] * self.idf[g] for g, v in q.items() if g in d)
                pair.append(dot / (qn * dn))
            if pair[0] or pair[1]:
                out[i] = (pair[0], pair[1])
        return out


# collect ------------------------------------------------------------------------------------------
def prepare(data: Path, shared: Path) -> Resources:
    manifest = shared / "eval" / "grocery" / "manifest.csv"
    resources = Resources.open(Settings.load(data_dir=data))
    ingest(resources, shared / "catalogs" / "luma" / "catalog.jsonl")
    gallery = data / "grocery-gallery.jsonl"
    gallery.write_text("".join(json.dumps(o) + "\n" for o in evaluate.grocery_gallery(manifest)))
    ingest(resources, gallery)
    resources.close()
    return Resources.open(Settings.load(data_dir=data))


def query(resources: Resources, ocr, data: bytes) -> dict[str, Any]:
    started = time.perf_counter()
    analysis = queries.analyse_bytes(resources, data)
    ranked = search.ranked(resources, analysis.vectors, analysis.local)
    seconds = time.perf_counter() - started
    img = opened(data)
    box = analysis.region.wire()  # the searched box, in the upright photo's pixels
    if box != [0, 0, *img.size]:
        img = img.crop(analysis.region.corners())
    lines, ms = read(ocr, img)
    return {
        "ranking": [[c.item_id, round(c.score, 5)] for c in ranked],
        "search_ms": 1000 * seconds,
        "box": box,
        "lines": lines,
        "ocr_ms": ms,
    }


def collect(args: argparse.Namespace) -> None:
    path = args.out / "collect.json"
    if path.exists():
        print(f"{path} exists: reusing it")
        return
    manifest = args.shared / "eval" / "grocery" / "manifest.csv"
    luma = args.shared / "catalogs" / "luma" / "catalog.jsonl"
    resources = prepare(args.data, args.shared)
    ocr = engine(args.threads)
    out: dict[str, Any] = {"titles": {}, "photo": {}, "photo_ms": {}, "grocery": [], "edits": []}
    for offer in evaluate.grocery_gallery(manifest):
        out["titles"][offer["item_id"]] = offer["title"]
        lines, ms = read(ocr, Image.open(offer["img"]))
        out["photo"][offer["item_id"]], out["photo_ms"][offer["item_id"]] = lines, ms
    for row in iter_rows(JsonLines(luma), IngestReport()):
        out["titles"][row.record.item_id] = row.record.title
        lines, ms = read(ocr, opened(local_path(row.record.img, luma.parent).read_bytes()))
        out["photo"][row.record.item_id], out["photo_ms"][row.record.item_id] = lines, ms
    print(f"catalog photos read: {len(out['photo'])}")
    for n, (meta, data, relevant) in enumerate(evaluate.grocery_cases(manifest)):
        out["grocery"].append({**meta, "relevant": sorted(relevant), **query(resources, ocr, data)})
        if n % 50 == 0:
            print(f"grocery {n}")
    for n, (meta, data, relevant) in enumerate(evaluate.edits_cases(resources, luma, 0, args.edits_offers)):
        meta.pop("category_path", None)
        out["edits"].append({**meta, "relevant": sorted(relevant), **query(resources, ocr, data)})
        if n % 50 == 0:
            print(f"edits {n}")
    resources.close()
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))


def reread(args: argparse.Namespace) -> None:
    """The grocery photos read again with --det-side (and the whole query photo with --whole):
    --out/collect-<tag>.json, the rankings and the other texts kept from collect.json."""
    got = json.loads((args.out / "collect.json").read_text())
    manifest = args.shared / "eval" / "grocery" / "manifest.csv"
    ocr = engine(args.threads, args.det_side)
    for offer in evaluate.grocery_gallery(manifest):
        i = str(offer["item_id"])
        got["photo"][i], got["photo_ms"][i] = read(ocr, Image.open(offer["img"]))
    for case in got["grocery"]:
        img = opened((manifest.parent / case["image"]).read_bytes())
        if not args.whole:
            img = img.crop(tuple(case["box"]))
        case["lines"], case["ocr_ms"] = read(ocr, img)
    (args.out / f"collect-{args.tag}.json").write_text(json.dumps(got))


# timing -------------------------------------------------------------------------------------------
def detect_ms(ocr, img: Image.Image) -> float:
    """What a photo without text costs: the downscale and the detection alone."""
    started = time.perf_counter()
    img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    ocr.text_det(np.asarray(img)[:, :, ::-1])
    return 1000 * (time.perf_counter() - started)


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"n": len(ms), "p50": statistics.median(ms), "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))]}


def timing(args: argparse.Namespace) -> dict[str, Any]:
    manifest = args.shared / "eval" / "grocery" / "manifest.csv"
    luma = args.shared / "catalogs" / "luma" / "catalog.jsonl"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    photos = {
        "grocery query": [r for r in rows if r["role"] == "query"][:: max(1, 296 // args.sample)],
        "grocery catalog": [r for r in rows if r["role"] == "catalog"][:: max(1, 81 // args.sample)],
    }
    sets = {k: [Image.open(manifest.parent / r["image_path"]).convert("RGB") for r in v] for k, v in photos.items()}
    luma_rows = list(iter_rows(JsonLines(luma), IngestReport()))[:: max(1, 214 // args.sample)]
    sets["luma catalog"] = [opened(local_path(r.record.img, luma.parent).read_bytes()) for r in luma_rows]
    report: dict[str, Any] = {}
    for threads in (1, 2):
        ocr = engine(threads, args.det_side)
        read(ocr, sets["grocery query"][0])  # warm
        for name, imgs in sets.items():
            ms = [read(ocr, img)[1] for img in imgs]
            det = [detect_ms(ocr, img) for img in imgs]
            report[f"{name}, {threads} thread{'s' if threads > 1 else ''}"] = {"read": _stats(ms), "detection only": _stats(det)}
            print(name, threads, _stats(ms), "detection only", _stats(det))
    return report


# fuse ---------------------------------------------------------------------------------------------
def _rank(ranking: list[tuple[int, float]], relevant: set[int]) -> int | None:
    return next((i for i, (item, _) in enumerate(ranking, 1) if item in relevant), None)


def fused(
    case: dict[str, Any], texts: Texts, weight: float, use_photo: bool, mode: str, floor: float = 0.0
) -> list[tuple[int, float]]:
    ranking = [(int(i), float(s)) for i, s in case["ranking"]]
    if not weight or not case["lines"]:
        return ranking
    found = texts.scores(weighted(case["lines"]), [i for i, _ in ranking])
    out = []
    for i, s in ranking:
        title, photo = found.get(i, (0.0, 0.0))
        text = (max(title, photo) if mode == "max" else title + photo) if use_photo else title
        out.append((i, s + weight * text if text >= floor else s))
    out.sort(key=lambda p: (-p[1], p[0]))
    return out


def _recall(ranks: list[int | None], k: int) -> float:
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def fuse(args: argparse.Namespace) -> list[dict[str, Any]]:
    got = json.loads((args.out / args.collect).read_text())
    titles = {int(i): t for i, t in got["titles"].items()}
    photo = {int(i): lines for i, lines in got["photo"].items()}
    variants: list[tuple[str, Texts, float, bool, str, float]] = [("today", Texts(titles, None), 0.0, False, "", 0.0)]
    title_only, with_photo = Texts(titles, None), Texts(titles, photo)
    for floor in args.floors:
        for w in args.weights:
            variants.append((f"title, w={w}, floor={floor}", title_only, w, False, "", floor))
        for w in args.weights:
            variants.append((f"title + photo text (max), w={w}, floor={floor}", with_photo, w, True, "max", floor))
            variants.append((f"title + photo text (sum), w={w}, floor={floor}", with_photo, w, True, "sum", floor))
    rows = []
    for label, texts, w, use_photo, mode, floor in variants:
        row: dict[str, Any] = {"variant": label}
        parts = {
            "packaged": [c for c in got["grocery"] if c["packaged"]],
            "loose": [c for c in got["grocery"] if not c["packaged"]],
            "grocery": got["grocery"],
            "edits": got["edits"],
            "watermark": [c for c in got["edits"] if c["edit"] in ("watermark", "chained")],
        }
        for part, cases in parts.items():
            ranks = [_rank(fused(c, texts, w, use_photo, mode, floor), set(c["relevant"])) for c in cases]
            row[part] = {"n": len(cases), "r1": _recall(ranks, 1), "r10": _recall(ranks, 10)}
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = "| variant | packaged R@1 | packaged R@10 | loose R@1 | loose R@10 | grocery R@1 | grocery R@10 | edits R@1 | edits R@10 | watermark+chained R@1 |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        cells = [f"{r[p]['r1']:.3f} | {r[p]['r10']:.3f}" for p in ("packaged", "loose", "grocery", "edits")] + [
            f"{r['watermark']['r1']:.3f}"
        ]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    ns = rows[0]
    lines.append(
        f"\nqueries: packaged {ns['packaged']['n']}, loose {ns['loose']['n']}, edits {ns['edits']['n']} "
        f"(watermark+chained {ns['watermark']['n']})"
    )
    return "\n".join(lines)


def costs(args: argparse.Namespace) -> dict[str, Any]:
    got = json.loads((args.out / args.collect).read_text())
    grocery_ids = {int(i) for i in got["titles"] if 0 <= int(i) - evaluate.GROCERY_ITEM_BASE < 100_000}
    photo_ms = {int(i): ms for i, ms in got["photo_ms"].items()}
    out = {
        "grocery query (searched box)": _stats([c["ocr_ms"] for c in got["grocery"]]),
        "edits query (searched box)": _stats([c["ocr_ms"] for c in got["edits"]]) if got["edits"] else {},
        "grocery catalog photo": _stats([ms for i, ms in photo_ms.items() if i in grocery_ids]),
        "luma main photo": _stats([ms for i, ms in photo_ms.items() if i not in grocery_ids]),
        "search today, grocery": _stats([c["search_ms"] for c in got["grocery"]]),
    }
    with_text = {
        "grocery queries with text": sum(1 for c in got["grocery"] if c["lines"]) / len(got["grocery"]),
        "edits queries with text": sum(1 for c in got["edits"] if c["lines"]) / max(1, len(got["edits"])),
        "luma photos with text": sum(1 for i, lines in got["photo"].items() if lines and int(i) not in grocery_ids) / 214,
    }
    return {"ms per photo (collect run, 2 threads)": out, "share with text": with_text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="+", choices=["collect", "reread", "timing", "fuse"])
    parser.add_argument("--data", type=Path, default=Path("build/ocr-signal/eval-data"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("build/ocr-signal"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--det-side", type=int, default=DET_MIN_SIDE, help="reread, timing: detection's shorter side")
    parser.add_argument("--whole", action="store_true", help="reread: the whole query photo, not the searched box")
    parser.add_argument("--tag", default="reread", help="reread: written to collect-<tag>.json")
    parser.add_argument("--collect", default="collect.json", help="fuse: the collected file in --out to use")
    parser.add_argument("--edits-offers", type=int, default=40, help="edits queries: the first this many luma offers")
    parser.add_argument("--sample", type=int, default=30, help="timing: about this many photos of each kind")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.2], help="text scores below this count as none")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "report.json"
    report: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        report = json.loads(report_path.read_text())
    if "collect" in args.steps:
        collect(args)
    if "reread" in args.steps:
        reread(args)
        args.collect = f"collect-{args.tag}.json"
    if "collect" in args.steps or "reread" in args.steps:
        report[f"costs {args.collect}"] = costs(args)
        print(json.dumps(report[f"costs {args.collect}"], indent=1))
    if "timing" in args.steps:
        report[f"timing det {args.det_side}"] = timing(args)
    if "fuse" in args.steps:
        report[f"fusion {args.collect}"] = fuse(args)
        print(table(report[f"fusion {args.collect}"]))
    report_path.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
