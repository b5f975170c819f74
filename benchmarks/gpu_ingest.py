"""Bulk ingest on a GPU against the CPU: equality first, then images/s per stage and batch size.

    python benchmarks/gpu_ingest.py [--device auto] [--n 4096] [--luma DIR] [--out build/gpu-ingest.json]

1. Equality on the luma photos: torch (fp16 on a GPU, and compiled where asked) against the ONNX
   model on the same prepared pixels; then the GPU's decoding and preparing (nvJPEG, torch)
   against the CPU's (Pillow), both embedded by ONNX. Cosine: min, 1st percentile, median.
2. N synthetic but realistic JPEGs, made here: luma photos cropped, flipped, recoloured and
   resized to 800 px on the long side, quality 85, each one different.
3. Decode alone: Pillow in P processes (decode, trim, resize; then with SIFT as well), and the
   GPU's decoding in batches. Embed alone: each batch size, from host memory (pinned uploads)
   and, on a GPU, from device memory; fp16 eager, and compiled with --compile.
4. End to end: `snapsource ingest` itself (read, hash, decode, embed, store image rows and files,
   vectors in faiss) on a catalog of the N JPEGs, on this device and on the CPU, with geometric
   re-ranking's SIFT off and on.

Everything runs on the machine it is started on; docs/gpu-ingest.md has the tables of a GPU and a
CPU machine, and scripts/device-gpu-ingest runs this on a lent GPU machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from snapsource.config import Settings
from snapsource.ingest.pipeline import Plan, decode_for_model, ingest
from snapsource.resources import Resources
from snapsource.tools.bench_catalog import reshot
from snapsource.vision import gpu_images, images
from snapsource.vision.embed import OnnxEmbedder, open_embedder

ROOT = Path(__file__).resolve().parents[1]
LUMA = ROOT.parent / "shared" / "catalogs" / "luma"
LIMITS = images.ImageLimits()
COMPILED_BATCH = 256
CPU_TORCH_SAMPLE = 128  # torch runs fp16 slowly on a CPU


def luma_photos(folder: Path) -> list[Path]:
    return sorted((folder / "images").rglob("*.jpg"))


def synthetic(args: tuple[bytes, int]) -> bytes:
    """A realistic catalog JPEG: a luma photo cropped, maybe flipped, recoloured, 800 px, quality 85."""
    data, seed = args
    rng = random.Random(seed)
    img = reshot(Image.open(io.BytesIO(data)).convert("RGB"), rng, smallest=0.7)
    scale = 800 / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def _prepare_cpu(data: bytes, local: bool) -> np.ndarray:
    done = decode_for_model(data, LIMITS, 0.08, local)
    assert not isinstance(done, str), done
    return done.pixels


def _prepare_no_sift(data: bytes) -> np.ndarray:
    return _prepare_cpu(data, False)


def _prepare_sift(data: bytes) -> np.ndarray:
    return _prepare_cpu(data, True)


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = (a * b).sum(axis=1)
    return {
        "min": float(c.min()),
        "p1": float(np.percentile(c, 1)),
        "median": float(np.median(c)),
        "below_0.999": int((c < 0.999).sum()),
        "n": int(len(c)),
    }


def in_batches(embed, pixels: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([embed(pixels[i : i + size]) for i in range(0, len(pixels), size)])


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, object]] = []
        self.results: dict[str, object] = {}
        self.cpu = OnnxEmbedder()
        self.embedder = open_embedder(args.device)
        self.gpu = self.embedder.gpu
        self.pool = ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn"))

    def row(self, stage: str, where: str, batch: object, n: int, seconds: float, note: str = "") -> None:
        self.rows.append(
            {
                "stage": stage,
                "device": where,
                "batch": batch,
                "images": n,
                "images_per_s": round(rate(n, seconds), 1),
                "note": note,
            }
        )
        print(f"  {stage:<34} {where:<22} {str(batch):>6} {rate(n, seconds):>10,.1f} img/s  {note}", flush=True)

    def environment(self) -> None:
        env = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "embedder": self.embedder.description,
            "cpu_embedder": self.cpu.description,
            "decoder processes": self.args.processes,
            "nvjpeg": gpu_images.nvjpeg_problem(str(getattr(self.embedder, "device", "cpu"))) or "yes",
        }
        try:
            import torch

            env["torch"] = torch.__version__
            env["cuda"] = torch.version.cuda
        except ImportError:
            env["torch"] = "not installed"
        self.results["environment"] = env
        print(json.dumps(env, indent=2), flush=True)

    def equality(self, luma: list[bytes]) -> None:
        """The backend on the same pixels, then the GPU's preparation of the same bytes."""
        pixels = np.stack(list(self.pool.map(_prepare_no_sift, luma, chunksize=8)))
        onnx = in_batches(self.cpu.embed_pixels, pixels, 64)
        out: dict[str, object] = {}
        if not isinstance(self.embedder, OnnxEmbedder):
            out["torch vs onnx, same pixels"] = cosines(in_batches(self.embedder.embed_pixels, pixels, COMPILED_BATCH), onnx)
            if self.args.compile:
                with self.stage("compile"):
                    started = time.perf_counter()
                    compiled = self._compiled_embedder()
                    out["torch compiled vs onnx"] = cosines(in_batches(compiled.embed_pixels, pixels, COMPILED_BATCH), onnx)
                    out["torch compiled vs onnx"]["first_call_s"] = round(time.perf_counter() - started, 1)
            device = self.embedder.device
        else:
            device = "cpu"
            with self.stage("torch on the CPU"):  # the GPU's code path, where there is no GPU: a sample
                from snapsource.vision.embed_torch import TorchEmbedder

                sample = min(len(pixels), CPU_TORCH_SAMPLE)
                fp16 = TorchEmbedder("cpu", precision="fp16").embed_pixels
                out["torch fp16 (cpu autocast) vs onnx, same pixels"] = cosines(
                    in_batches(fp16, pixels[:sample], 32), onnx[:sample]
                )
        prep = gpu_images.GpuImages(device, 0.08, local=False)
        heads = [gpu_images.header(d, LIMITS, progressive=True) for d in luma]
        keep = [i for i, h in enumerate(heads) if h is not None]
        prepared = [
            prep.prepare([luma[i] for i in keep[s : s + 64]], [heads[i] for i in keep[s : s + 64]])
            for s in range(0, len(keep), 64)
        ]
        gpu_pixels = np.concatenate([p.pixels.cpu().numpy() for p in prepared])
        failed = sum(len(p.failed) for p in prepared)
        done = [keep[s + j] for s, p in zip(range(0, len(keep), 64), prepared) for j in p.done]
        out["gpu preparation vs pillow (onnx vectors)"] = {
            **cosines(in_batches(self.cpu.embed_pixels, gpu_pixels, 64), onnx[done]),
            "decoder": "nvJPEG" if getattr(device, "type", device) == "cuda" else "Pillow at full size (no GPU)",
            "failed": failed,
            "mean_abs_pixel_diff": float(np.abs(gpu_pixels.astype(np.int16) - pixels[done]).mean()),
        }
        self.results["equality"] = out
        print(json.dumps(out, indent=2), flush=True)

    def decode(self, label: str, jpegs: list[bytes], gpu_batches: list[int]) -> None:
        for fn, note in ((_prepare_no_sift, "decode, trim, resize"), (_prepare_sift, "... and SIFT")):
            list(self.pool.map(fn, jpegs[: self.args.processes * 2]))  # warm the processes
            started = time.perf_counter()
            list(self.pool.map(fn, jpegs, chunksize=8))
            self.row(
                f"decode {label}", f"Pillow x{self.args.processes} procs", "-", len(jpegs), time.perf_counter() - started, note
            )
        if self.gpu and gpu_images.nvjpeg_problem(str(self.embedder.device)) is None:
            heads = [gpu_images.header(d, LIMITS, progressive=True) for d in jpegs]
            progressive = sum(gpu_images.header(d, LIMITS) is None for d in jpegs)
            kind = f"{progressive} of {len(jpegs)} progressive (ingest gives those to the CPU)" if progressive else "baseline"
            for batch in gpu_batches:
                prep = gpu_images.GpuImages(self.embedder.device, 0.08, local=False)
                prep.prepare(jpegs[:batch], heads[:batch])
                started = time.perf_counter()
                for s in range(0, len(jpegs), batch):
                    prep.prepare(jpegs[s : s + batch], heads[s : s + batch]).pixels.cpu()
                self.row(
                    f"decode {label}",
                    "nvJPEG + torch",
                    batch,
                    len(jpegs),
                    time.perf_counter() - started,
                    f"decode, trim, resize; {kind}",
                )
            started = time.perf_counter()
            for d in jpegs:
                gpu_images.header(d, LIMITS, progressive=True)
            self.row(
                f"decode {label}", "header (1 CPU thread)", "-", len(jpegs), time.perf_counter() - started, "size, orientation"
            )

    def embed(self, pixels: np.ndarray) -> None:
        n = len(pixels)
        for batch in self.args.batches if self.gpu else [32]:
            for name, embedder in self._embedders(batch):
                embedder.embed_pixels(pixels[:batch])
                started = time.perf_counter()
                in_batches(embedder.embed_pixels, pixels, batch)
                self.row("embed (host uint8)", name, batch, n, time.perf_counter() - started)
            if self.gpu:
                import torch

                on_device = torch.from_numpy(pixels).to(self.embedder.device)
                started = time.perf_counter()
                for s in range(0, n, batch):
                    self.embedder.embed_pixels(on_device[s : s + batch])
                self.row("embed (device uint8)", self.embedder.description, batch, n, time.perf_counter() - started)
        if not isinstance(self.embedder, OnnxEmbedder):  # the CPU's figure beside the GPU's
            started = time.perf_counter()
            in_batches(self.cpu.embed_pixels, pixels[: min(n, 512)], 32)
            self.row("embed (host uint8)", self.cpu.description, 32, min(n, 512), time.perf_counter() - started)

    def _compiled_embedder(self):
        from snapsource.vision.embed_torch import TorchEmbedder

        if not hasattr(self, "_compiled"):
            self._compiled = TorchEmbedder(str(self.embedder.device), compile=True)
        return self._compiled

    def _embedders(self, batch: int):
        yield self.embedder.description, self.embedder
        if self.gpu and self.args.compile and batch == COMPILED_BATCH and "compile" not in self.results.get("failed", {}):
            yield self._compiled_embedder().description, self._compiled_embedder()  # one shape: each compiles anew

    def end_to_end(self, jpegs: list[bytes], workdir: Path) -> None:
        """`snapsource ingest` on a catalog of the JPEGs: one offer each, files on local disk."""
        folder = workdir / "jpegs"
        folder.mkdir()
        template = json.loads((self.args.luma / "catalog.jsonl").read_text().splitlines()[0])
        lines = []
        for i, data in enumerate(jpegs):
            path = folder / f"{i}.jpg"
            path.write_bytes(data)
            lines.append(json.dumps({**template, "item_id": 10_000_000 + i, "img": str(path), "images": []}))
        catalog = workdir / "catalog.jsonl"
        catalog.write_text("\n".join(lines) + "\n")
        runs = [("cpu", 0, True), ("cpu", 10, True)]
        if self.gpu:
            runs = [
                (str(self.embedder.device), 0, True),
                (str(self.embedder.device), 10, True),
                (str(self.embedder.device), 0, False),
                *runs,
            ]
        for device, rerank_k, gpu_decode in runs:
            if device == "cpu" and len(jpegs) > self.args.cpu_n:
                use = catalog.with_name("catalog-cpu.jsonl")
                use.write_text("\n".join(lines[: self.args.cpu_n]) + "\n")
            else:
                use = catalog
            data_dir = Path(tempfile.mkdtemp(dir=workdir))
            settings = Settings.load(
                environ={}, data_dir=data_dir, device=device, precision="float32", rerank_k=rerank_k, gpu_decode=gpu_decode
            )
            resources = Resources.open(settings)
            plan = Plan.of(resources)
            report = ingest(resources, use, plan=plan)
            resources.close()
            assert report.images_failed == 0 and report.problems == [], report.problems[:3]
            note = f"SIFT {'on' if rerank_k else 'off'}; {plan.describe()}"
            self.row(
                "end to end: snapsource ingest",
                resources.embedder.description,
                plan.batch_size,
                report.images_embedded,
                report.seconds,
                note,
            )

    @contextlib.contextmanager
    def stage(self, name: str):
        """A stage that fails is reported and the others still run: a GPU machine is lent for minutes."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - reported, then the next stage
            traceback.print_exc()
            self.results.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"
            print(f"stage {name!r} failed: {exc}", flush=True)

    def run(self) -> None:
        self.environment()
        photos = luma_photos(self.args.luma)
        luma = [p.read_bytes() for p in photos]
        print(f"equality on {len(luma)} luma photos", flush=True)
        with self.stage("equality"):
            self.equality(luma)
        n = self.args.n if self.gpu else self.args.cpu_n
        started = time.perf_counter()
        jpegs = list(self.pool.map(synthetic, [(luma[i % len(luma)], i) for i in range(n)], chunksize=16))
        print(
            f"{n} synthetic JPEGs ({statistics.mean(map(len, jpegs)) / 1000:.0f} KB on average) "
            f"made in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        print(f"  {'stage':<34} {'device':<22} {'batch':>6} {'rate':>14}", flush=True)
        with self.stage("decode synthetic"):
            self.decode("synthetic 800 px", jpegs, self.args.batches)
        with self.stage("decode luma"):  # progressive JPEGs: nvJPEG takes them one at a time, so one batch size
            self.decode(f"luma x{-(-n // len(luma))}", (luma * (-(-n // len(luma))))[:n], [COMPILED_BATCH])
        with self.stage("embed"):
            self.embed(np.stack(list(self.pool.map(_prepare_no_sift, jpegs, chunksize=8))))
        with self.stage("end to end"), tempfile.TemporaryDirectory() as workdir:
            self.end_to_end(jpegs, Path(workdir))
        self.results["rows"] = self.rows
        self.pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--n", type=int, default=8192, help="synthetic JPEGs on a GPU")
    parser.add_argument("--cpu-n", type=int, default=512, help="synthetic JPEGs for CPU runs")
    parser.add_argument("--luma", type=Path, default=LUMA, help="the luma catalog folder (catalog.jsonl, images/)")
    parser.add_argument("--batches", default="64,128,256,512")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="decoder processes")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-ingest.json")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    bench = Bench(args)
    bench.run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **bench.results}, indent=2) + "\n")
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
