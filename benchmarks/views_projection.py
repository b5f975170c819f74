"""Issue 23 Part B, offline: would a linear projection learned from the luma offers' several
photos of one product make our ImageNet vectors better at finding a product from another view?

The luma offers show 2-7 photos of one product (front, back, detail, other colours): free pairs
for this catalog. This script fits projections on the stored image vectors of an ingested eval
data dir (`snapsource eval` imports luma and the grocery gallery into it) and scores them on the
query vectors the pipeline makes (`queries.analyse_bytes`: box framings and whole photo), with the
pipeline's ranking replayed in numpy (best image per offer, the similarity floor, geometric
re-ranking of the first `rerank_k` with the stored local features):

- `views`: each luma offer's other photos, leave-one-out (the photo's own vector is no candidate),
  cross-validated by product: k folds over the products (relisted twins are one product), each
  fold's projection fitted without that fold's offers, so no views query is scored by a
  projection that saw its product.
- `grocery` and `edits`: the projection fitted on all of luma, applied to everything (the
  grocery gallery and the queries too).

Variants: centring alone; PCA-whitening of the luma vectors with shrinkage (eigenvalues pulled
towards their mean: 0 is full whitening, 1 plain PCA); learned whitening (Radenović et al. 2016:
whiten by the within-product covariance, shrunk towards a multiple of the identity, then PCA of
the whitened vectors) and LDA (the same with the covariance of the product means); a full linear
map trained with a supervised contrastive loss (photos of one product as positives), anchored
to the identity; and blends of a projection's score with today's.

The rows marked "pipeline floor" keep the search's candidate floor (similarity_threshold,
similarity_margin), calibrated for today's cosine scale: they should equal `snapsource eval`.
A projection changes that scale, so every variant is compared without the floor, against
today's figures also without it (R@1 hardly moves; R@10 and mAP can only rise).

    .venv/bin/snapsource eval grocery edits views --data build/views/eval-data   # imports, today's figures
    .venv/bin/python benchmarks/views_projection.py --data build/views/eval-data --out build/views/projection.json

The query analyses and geometric checks are kept in --cache (a rerun only replays rankings).
On the 2-core machine: 13.5 min with --quick (4 of them analysing the queries), and about 4 min
for each contrastive variant. Results: docs/quality.md, issue 23 Part B.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snapsource.config import Settings
from snapsource.ingest.pipeline import ingest
from snapsource.resources import Resources, query_pipeline
from snapsource.search import queries
from snapsource.tools import evaluate
from snapsource.vision import verify

PROTOCOLS = ("views", "grocery", "edits")
Projection = tuple[np.ndarray, np.ndarray]  # (mean, D x d map): x -> normalise((x - mean) @ map)


# the queries, as the pipeline sees them ------------------------------------------------------------
@dataclass
class Query:
    vectors: np.ndarray  # the pipeline's query vectors (1 or 2, unit length)
    points: np.ndarray | None
    descriptors: np.ndarray | None
    relevant: list[int]
    leave_out: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> verify.LocalFeatures | None:
        if self.points is None or self.descriptors is None:
            return None
        return verify.LocalFeatures(self.points, self.descriptors)


def analyse(resources: Resources, shared: Path, cache: Path) -> dict[str, list[Query]]:
    """Every query of the three protocols through the query pipeline, kept in `cache`."""
    if cache.is_file():
        with open(cache, "rb") as fh:  # our own file, written below
            return pickle.load(fh)
    luma = shared / "catalogs" / "luma" / "catalog.jsonl"
    cases = {
        "views": evaluate.views_cases(resources, luma),
        "grocery": evaluate.grocery_cases(shared / "eval" / "grocery" / "manifest.csv"),
        "edits": evaluate.edits_cases(resources, luma, seed=0),
    }
    found: dict[str, list[Query]] = {}
    for protocol, generator in cases.items():
        started = time.perf_counter()
        found[protocol] = []
        for meta, data, relevant in generator:
            a = queries.analyse_bytes(resources, data)
            local = a.local
            found[protocol].append(
                Query(
                    a.vectors.astype(np.float32),
                    None if local is None else local.points,
                    None if local is None else local.descriptors,
                    sorted(relevant),
                    list(meta.pop("leave_out", [])),
                    {k: v for k, v in meta.items() if k in ("packaged", "edit", "image")},
                )
            )
        print(f"{protocol}: {len(found[protocol])} queries analysed in {time.perf_counter() - started:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "wb") as fh:
        pickle.dump(found, fh)
    return found


# the catalog --------------------------------------------------------------------------------------
@dataclass
class Catalog:
    image_ids: np.ndarray  # (N,) every indexed image
    vectors: np.ndarray  # (N, D) as stored
    item_ids: np.ndarray  # (M,) offers, sorted
    pair_image: np.ndarray  # (P,) positions in image_ids, pairs sorted by offer
    pair_offer: np.ndarray  # (P,) positions in item_ids
    offer_start: np.ndarray  # (M,) first pair of each offer
    group: np.ndarray  # (N,) product of each luma image, -1 for the others
    features: dict[int, verify.LocalFeatures]

    @property
    def luma(self) -> np.ndarray:
        return self.group >= 0


def load_catalog(resources: Resources, luma_offers: set[int]) -> Catalog:
    """The indexed images; the photos of `luma_offers` grouped by product."""
    image_ids = np.sort(resources.index.ids())
    vectors = resources.index.vectors(image_ids)
    pairs = np.asarray(resources.catalog.offers_for_images(image_ids.tolist()), np.int64)
    pairs = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    item_ids, pair_offer = np.unique(pairs[:, 1], return_inverse=True)
    pair_image = np.searchsorted(image_ids, pairs[:, 0])
    offer_start = np.flatnonzero(np.r_[True, pair_offer[1:] != pair_offer[:-1]])
    # products: luma offers that share a photo (relisted twins) are one product
    parent = {int(i): int(i) for i in item_ids}

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_offer: dict[int, int] = {}
    for image, item in pairs.tolist():
        if item in luma_offers:
            if image in first_offer:
                parent[root(item)] = root(first_offer[image])
            first_offer.setdefault(image, item)
    roots = sorted({root(item) for item in first_offer.values()})
    number = {r: n for n, r in enumerate(roots)}
    group = np.full(len(image_ids), -1, np.int64)
    for image, item in first_offer.items():
        group[np.searchsorted(image_ids, image)] = number[root(item)]
    blobs = resources.catalog.local_features(image_ids.tolist())
    features = {i: verify.LocalFeatures.from_bytes(b) for i, b in blobs.items()}
    return Catalog(image_ids, vectors, item_ids, pair_image, pair_offer, offer_start, group, features)


def product_of(catalog: Catalog) -> dict[int, int]:
    """Luma offer -> product."""
    offers = catalog.item_ids[catalog.pair_offer]
    groups = catalog.group[catalog.pair_image]
    return {int(o): int(g) for o, g in zip(offers, groups) if g >= 0}


# projections --------------------------------------------------------------------------------------
def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def project(p: Projection | None, x: np.ndarray) -> np.ndarray:
    if p is None:
        return x
    mean, m = p
    return _normalise((x - mean) @ m).astype(np.float32)


def _top_eigen(c: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(c)
    order = np.argsort(values)[::-1][:d]
    return np.maximum(values[order], 0.0), vectors[:, order]


def _shrunk(values: np.ndarray, alpha: float) -> np.ndarray:
    return (1 - alpha) * values + alpha * values.mean() + 1e-9


def fit_centre(x: np.ndarray, g: np.ndarray) -> Projection:
    return x.mean(0), np.eye(x.shape[1], dtype=np.float64)


def fit_pca(x: np.ndarray, g: np.ndarray, d: int, alpha: float) -> Projection:
    """PCA-whitening: the top d components, each scaled by 1/sqrt of its eigenvalue pulled
    towards the mean eigenvalue by `alpha` (0: full whitening, 1: no whitening)."""
    mean = x.mean(0)
    values, vectors = _top_eigen(np.cov(x - mean, rowvar=False), d)
    return mean, vectors / np.sqrt(_shrunk(values, alpha))


def _within(x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The within-product covariance (products with two or more photos), the product means and
    their sizes."""
    labels, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    means = np.zeros((len(labels), x.shape[1]))
    np.add.at(means, inverse, x)
    means /= counts[:, None]
    several = counts[inverse] >= 2
    deviations = (x - means[inverse])[several]
    return deviations.T @ deviations / max(1, len(deviations)), means, counts


def fit_learned(x: np.ndarray, g: np.ndarray, d: int, alpha: float, between: str = "total") -> Projection:
    """Learned whitening: whiten by the within-product covariance shrunk towards a multiple of
    the identity (`alpha`), then keep the top d components of the whitened vectors (`total`:
    their covariance, Radenović's Lw) or of the whitened product means (`means`: LDA)."""
    mean = x.mean(0)
    within, means, counts = _within(x, g)
    scale = np.trace(within) / len(within)
    values, vectors = np.linalg.eigh((1 - alpha) * within + alpha * scale * np.eye(len(within)))
    whiten = vectors / np.sqrt(np.maximum(values, 1e-9))
    if between == "means":
        centred = (means - mean) @ whiten
        spread = (centred * counts[:, None]).T @ centred / counts.sum()
    else:
        spread = np.cov((x - mean) @ whiten, rowvar=False)
    _, top = _top_eigen(spread, d)
    return mean, whiten @ top


def fit_contrastive(
    x: np.ndarray, g: np.ndarray, steps: int = 300, tau: float = 0.05, lr: float = 2e-4, decay: float = 1.0, seed: int = 0
) -> Projection:
    """A D x D map W (from the identity) trained with a supervised contrastive loss: each photo
    of a product with two or more photos should be nearer its product's other photos than every
    other photo, after x -> normalise(x W). Full batch, Adam, `decay` pulls W back to I."""
    rng = np.random.default_rng(seed)
    n, dim = x.shape
    w = np.eye(dim) + rng.normal(0, 1e-4, (dim, dim))
    same = (g[:, None] == g[None, :]) & ~np.eye(n, dtype=bool)
    anchors = same.any(1)
    target = np.where(same, 1.0, 0.0)
    target[anchors] /= same[anchors].sum(1, keepdims=True)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for step in range(1, steps + 1):
        z = x @ w
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        u = z / norms
        s = u @ u.T / tau
        np.fill_diagonal(s, -np.inf)
        s -= s.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        grad_s = np.where(anchors[:, None], p - target, 0.0) / anchors.sum()
        grad_u = (grad_s + grad_s.T) @ u / tau
        grad_z = (grad_u - u * (grad_u * u).sum(1, keepdims=True)) / norms
        grad = x.T @ grad_z + decay * (w - np.eye(dim)) / dim
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return np.zeros(dim), w


# the pipeline's ranking, replayed ----------------------------------------------------------------
class Ranker:
    def __init__(self, resources: Resources, catalog: Catalog, inliers: dict[tuple[str, int, int], int]) -> None:
        self.settings = resources.settings
        self.catalog = catalog
        self.inliers = inliers  # (protocol, query, image_id) -> geometric inliers, kept between runs

    def _checked(self, protocol: str, index: int, query: Query, image_ids: list[int]) -> list[int]:
        todo = [i for i in image_ids if (protocol, index, i) not in self.inliers]
        local = query.local
        if todo and local is not None:
            have = [i for i in todo if i in self.catalog.features]
            counts = verify.inliers_many(local, [self.catalog.features[i] for i in have], self.settings.rerank_min_inliers)
            self.inliers.update({(protocol, index, i): c for i, c in zip(have, counts)})
        return [self.inliers.get((protocol, index, i), 0) for i in image_ids]

    def rank(
        self,
        protocol: str,
        indices: list[int],
        found: list[Query],
        scores: np.ndarray,
        floor: bool,
    ) -> list[dict[str, Any]]:
        """Rows like evaluate._measure's for these queries, given each query's (len(indices), N)
        image scores (the best over its vectors)."""
        settings, catalog = self.settings, self.catalog
        rows = []
        for row, index in enumerate(indices):
            query = found[index]
            image_scores = scores[row].copy()
            if query.leave_out:
                image_scores[np.searchsorted(catalog.image_ids, query.leave_out)] = -np.inf
            pair_scores = image_scores[catalog.pair_image]
            offer_scores = np.maximum.reduceat(pair_scores, catalog.offer_start)
            keep = np.isfinite(offer_scores)
            if floor:
                top = float(offer_scores[keep].max())
                keep &= offer_scores >= max(settings.similarity_threshold, top - settings.similarity_margin)
            kept = np.flatnonzero(keep)
            order = kept[np.lexsort((catalog.item_ids[kept], -offer_scores[kept]))]
            ranked = [int(catalog.item_ids[o]) for o in order]
            final = offer_scores[order].astype(np.float64)
            head = min(settings.rerank_k, len(order))
            if head and query.local is not None:
                best_images = []
                ends = np.r_[catalog.offer_start[1:], len(catalog.pair_image)]
                for o in order[:head]:
                    pairs = np.arange(catalog.offer_start[o], ends[o])
                    best_images.append(int(catalog.image_ids[catalog.pair_image[pairs[np.argmax(pair_scores[pairs])]]]))
                for at, count in enumerate(self._checked(protocol, index, query, best_images)):
                    if count >= settings.rerank_min_inliers:
                        final[at] += settings.rerank_weight * min(count, verify.MAX_INLIERS)
                resorted = sorted(range(head), key=lambda at: (-final[at], ranked[at]))
                ranked = [ranked[at] for at in resorted] + ranked[head:]
            relevant = set(query.relevant)
            rank = next((i for i, item in enumerate(ranked, 1) if item in relevant), None)
            rows.append({**query.meta, "rank": rank, "ap": evaluate._average_precision(ranked, relevant)})
        return rows


def _scores(p: Projection | None, catalog_vectors: np.ndarray, found: list[Query], indices: list[int]) -> np.ndarray:
    """(len(indices), N): each query's best score over its vectors, for every image."""
    gallery = project(p, catalog_vectors)
    out = np.empty((len(indices), len(gallery)), np.float32)
    for row, index in enumerate(indices):
        out[row] = (project(p, found[index].vectors) @ gallery.T).max(0)
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    ranks = [r["rank"] for r in rows]
    return {
        "queries": n,
        **{f"recall_at_{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in (1, 10)},
        "map": sum(r["ap"] for r in rows) / n,
    }


Fit = Callable[[np.ndarray, np.ndarray], Projection]


def view_kind(path: str) -> str:
    """What a luma photo shows, from its file name: the main photo of another colour (the same
    shot), the back, or another view (alt, detail, outfit, side)."""
    name = Path(path).name
    if "back" in name:
        return "back"
    return "other colour" if name.endswith("_main.jpg") else "other view"


@dataclass
class Variant:
    name: str
    fit: Fit | None  # None: today's vectors
    blend: float = 1.0  # score = (1 - blend) * today's + blend * projected
    floor: bool = False
    queries: bool = False  # fit on the training products' views query vectors too (the pipeline's side)
    gallery: bool = False  # fit on the grocery gallery's photos too (one a product: no pairs, only spread)


def run_variant(
    variant: Variant, catalog: Catalog, found: dict[str, list[Query]], ranker: Ranker, folds: int, seed: int
) -> dict[str, Any]:
    luma = catalog.luma
    x, g = catalog.vectors[luma].astype(np.float64), catalog.group[luma]
    products = product_of(catalog)
    fold_of = np.random.default_rng(seed).permutation(g.max() + 1) % folds  # product -> fold

    def scores(p: Projection | None, protocol: str, indices: list[int]) -> np.ndarray:
        projected = _scores(p, catalog.vectors, found[protocol], indices)
        if variant.blend >= 1.0:
            return projected
        today = _scores(None, catalog.vectors, found[protocol], indices)
        return (1 - variant.blend) * today + variant.blend * projected

    def training(x: np.ndarray, g: np.ndarray, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The fit's vectors: the catalog's, and with `queries` the views queries' vectors of the
        same products (never of the fold scored)."""
        if variant.gallery:
            others = catalog.vectors[~luma].astype(np.float64)
            x = np.concatenate([x, others])
            g = np.concatenate([g, g.max() + 1 + np.arange(len(others))])
        if not variant.queries:
            return x, g
        extra = [
            (q.vectors, products[q.relevant[0]])
            for q in found["views"]
            if fold is None or fold_of[products[q.relevant[0]]] != fold
        ]
        qx = np.concatenate([v for v, _ in extra]).astype(np.float64)
        qg = np.concatenate([np.full(len(v), group) for v, group in extra])
        return np.concatenate([x, qx]), np.concatenate([g, qg])

    result: dict[str, Any] = {}
    started = time.perf_counter()
    rows = []
    for fold in range(folds):  # views: each fold scored by a projection fitted without its products
        train = fold_of[g] != fold
        p = None if variant.fit is None else variant.fit(*training(x[train], g[train], fold))
        indices = [i for i, q in enumerate(found["views"]) if fold_of[products[q.relevant[0]]] == fold]
        rows += ranker.rank("views", indices, found["views"], scores(p, "views", indices), variant.floor)
    result["views"] = summary(rows)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        kinds.setdefault(view_kind(row["image"]), []).append(row)
    result["views_by_kind"] = {kind: summary(part) for kind, part in sorted(kinds.items())}
    p = None if variant.fit is None else variant.fit(*training(x, g, None))  # grocery, edits: all of luma
    for protocol in ("grocery", "edits"):
        indices = list(range(len(found[protocol])))
        rows = ranker.rank(protocol, indices, found[protocol], scores(p, protocol, indices), variant.floor)
        result[protocol] = summary(rows)
        if protocol == "grocery":
            result["packaged"] = summary([r for r in rows if r.get("packaged")])
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def variants(quick: bool) -> list[Variant]:
    found = [
        Variant("today, pipeline floor", None, floor=True),
        Variant("today", None),
        Variant("centred", fit_centre),
    ]
    for d in (128, 256, 512):
        for alpha in (0.0, 0.3, 0.7, 1.0):
            found.append(Variant(f"PCA-whitening d={d} shrink={alpha}", lambda x, g, d=d, a=alpha: fit_pca(x, g, d, a)))
    for d in (128, 256, 512, 1280):
        for alpha in (0.1, 0.3, 0.6, 0.9):
            found.append(Variant(f"learned whitening d={d} shrink={alpha}", lambda x, g, d=d, a=alpha: fit_learned(x, g, d, a)))
    for d in (64, 128):
        for alpha in (0.3, 0.6, 0.9):
            found.append(Variant(f"LDA d={d} shrink={alpha}", lambda x, g, d=d, a=alpha: fit_learned(x, g, d, a, "means")))
    for d in (256, 512, 1280):
        for alpha in (0.3, 0.6, 0.9):
            found.append(
                Variant(
                    f"learned whitening, query vectors too, d={d} shrink={alpha}",
                    lambda x, g, d=d, a=alpha: fit_learned(x, g, d, a),
                    queries=True,
                )
            )
    bases: list[tuple[str, Fit]] = [
        ("LDA d=128 shrink=0.3", lambda x, g: fit_learned(x, g, 128, 0.3, "means")),
        ("learned whitening d=256 shrink=0.3", lambda x, g: fit_learned(x, g, 256, 0.3)),
        ("learned whitening d=512 shrink=0.6", lambda x, g: fit_learned(x, g, 512, 0.6)),
        ("learned whitening d=1280 shrink=0.6", lambda x, g: fit_learned(x, g, 1280, 0.6)),
    ]
    for name, fit in bases:
        found.append(Variant(f"{name}, fitted with the grocery gallery too", fit, gallery=True))
        for blend in (0.3, 0.5, 0.7):
            found.append(Variant(f"{name}, blended {blend} with today", fit, blend=blend))
            found.append(Variant(f"{name}, fitted with the grocery gallery too, blended {blend}", fit, blend=blend, gallery=True))
    if not quick:
        for tau, lr in ((0.05, 5e-5), (0.05, 2e-4), (0.1, 2e-4)):
            found.append(
                Variant(
                    f"contrastive W, 300 steps, tau={tau} lr={lr:g}",
                    lambda x, g, t=tau, r=lr: fit_contrastive(x, g, tau=t, lr=r),
                )
            )
        best: Fit = lambda x, g: fit_contrastive(x, g, tau=0.1, lr=2e-4)  # noqa: E731
        for blend in (0.5, 0.7):
            found.append(Variant(f"contrastive W, tau=0.1 lr=0.0002, blended {blend} with today", best, blend=blend))
        found.append(
            Variant(
                "contrastive W, tau=0.1 lr=0.0005, blended 0.5 with today",
                lambda x, g: fit_contrastive(x, g, tau=0.1, lr=5e-4),
                blend=0.5,
            )
        )
        found.append(Variant("contrastive W, tau=0.1 lr=0.0002, the grocery gallery as negatives too", best, gallery=True))
    return found


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | views R@1 | views R@10 | views mAP | grocery R@1 | grocery R@10 | packaged R@1 | edits R@1 | edits R@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v, gr, pk, ed = r["views"], r["grocery"], r["packaged"], r["edits"]
        lines.append(
            f"| {r['variant']} | {v['recall_at_1']:.3f} | {v['recall_at_10']:.3f} | {v['map']:.3f} | "
            f"{gr['recall_at_1']:.3f} | {gr['recall_at_10']:.3f} | {pk['recall_at_1']:.3f} | "
            f"{ed['recall_at_1']:.3f} | {ed['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("build/views/eval-data"))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--cache", type=Path, default=Path("build/views/cache"))
    parser.add_argument("--out", type=Path, default=Path("build/views/projection.json"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="Run the variants whose name contains one of these (|-separated).")
    parser.add_argument("--quick", action="store_true", help="Leave out the contrastive maps (minutes each).")
    args = parser.parse_args()

    resources = Resources.open(Settings.load(data_dir=args.data))
    luma = args.shared / "catalogs" / "luma" / "catalog.jsonl"
    ingest(resources, luma)  # only what changed: nothing once `snapsource eval` has run
    gallery = args.data / "grocery-gallery.jsonl"
    gallery.write_text(
        "".join(json.dumps(o) + "\n" for o in evaluate.grocery_gallery(args.shared / "eval" / "grocery" / "manifest.csv"))
    )
    ingest(resources, gallery)

    pipeline = query_pipeline(resources.embedder, resources.settings)  # the cache is per query pipeline
    cache = args.cache / hashlib.sha256(pipeline.encode()).hexdigest()[:12]
    print(f"query pipeline: {pipeline}")
    found = analyse(resources, args.shared, cache / "queries.pkl")
    catalog = load_catalog(resources, {json.loads(line)["item_id"] for line in luma.read_text().splitlines() if line.strip()})
    print(f"catalog: {len(catalog.image_ids)} images, {int(catalog.luma.sum())} of luma in {catalog.group.max() + 1} products")
    inliers_file = cache / "inliers.pkl"
    inliers: dict[tuple[str, int, int], int] = {}
    if inliers_file.is_file():
        with open(inliers_file, "rb") as fh:  # our own file
            inliers = pickle.load(fh)
    ranker = Ranker(resources, catalog, inliers)
    results = []
    for variant in variants(args.quick):
        if args.only and not any(part in variant.name for part in args.only.split("|")) and not variant.name.startswith("today"):
            continue
        result = {"variant": variant.name, **run_variant(variant, catalog, found, ranker, args.folds, args.seed)}
        results.append(result)
        print(table([result]).splitlines()[-1], f"({result['seconds']} s)", flush=True)
        with open(inliers_file, "wb") as fh:
            pickle.dump(inliers, fh)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    resources.close()


if __name__ == "__main__":
    main()
