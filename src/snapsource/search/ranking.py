"""Search by image, without any HTTP: query vector -> candidates -> filters -> sort -> page.

Candidates are the offers that pass the filters and whose best image reaches
`similarity_threshold`, at most `candidate_cap` of them, most similar first: the filters act
inside the vector search (store/columns.py, store/vectors), so a filter that keeps 1% of a large catalog still finds
that 1%'s best matches. Sorts then order that set, so `total_count` is the number of candidates
and every sort pages over the same set. Ties are broken by similarity, then item_id, so pages
never overlap or skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np

from snapsource.config import Settings
from snapsource.errors import ParameterError
from snapsource.offer import Item, wire_item
from snapsource.resources import Resources
from snapsource.search import categories
from snapsource.search.filters import Filters, Sort, check_category
from snapsource.store.catalog import StoredImage
from snapsource.store.columns import Columns, Selection
from snapsource.store.rankings import Ranking
from snapsource.vision import images, verify

MAX_PAGE_SIZE = 20
COPIES_SOUGHT = 16  # near-copies looked past for the best look-alike (relistings of one photo)


MATCHES = ("all", "same")  # `match`: every candidate, or only those that are the same product


@dataclasses.dataclass(frozen=True)
class Hit:
    doc: dict[str, object]  # the item in the API's schema, `img` relative to the server
    score: float  # the ranking score: similarity raised by geometric re-ranking (may pass 1)
    image: StoredImage  # the offer's main photo
    same_product: list[dict[str, object]] | None = None  # group_same: the folded relistings
    similarity: float = 0.0  # cosine similarity of the query and the photo that matched, 0-1
    same: bool = False  # the same product (geometric match or near-copy), not just alike
    matched: StoredImage | None = None  # the offer's photo that matched

    @property
    def item(self) -> Item:
        return Item.model_validate(self.doc)

    @property
    def match(self) -> str:
        return "same" if self.same else "similar"

    def wire(self, base_url: str, explain: bool = False) -> dict[str, object]:
        """The item as the API returns it, `img` made absolute with `base_url`; with group_same,
        `same_product` (the relistings folded into it) follows the spec's fields; with `explain`,
        then `similarity`, `match` and `matched_img`."""
        item = {**self.doc, "img": base_url + str(self.doc["img"])}
        if self.same_product is not None:
            item["same_product"] = self.same_product
        if explain:
            item["similarity"] = round(self.similarity, 4)
            item["match"] = self.match
            item["matched_img"] = base_url + f"/img/{(self.matched or self.image).name}"
        return item


@dataclasses.dataclass(frozen=True)
class Page:
    page: int
    page_size: int
    sort: Sort
    filters: Filters
    total_count: int
    hits: list[Hit]
    categories: list[categories.Vote] = dataclasses.field(default_factory=list)  # the query's, top level first

    @property
    def cat_id(self) -> str | None:
        """The category asked for, else the one predicted from the best matches."""
        return self.filters.cat_id or categories.predicted(self.categories)

    @property
    def has_next_page(self) -> bool:
        return self.page * self.page_size < self.total_count


@dataclasses.dataclass
class Candidate:
    item_id: int
    score: float  # similarity, raised by re-ranking
    image_id: int  # the offer's image that matched best
    inliers: int = 0
    similarity: float = 0.0  # the best image's cosine similarity, as the vector store gave it

    def __post_init__(self) -> None:
        if not self.similarity:
            self.similarity = self.score

    def same(self, settings: Settings) -> bool:
        """The same product, not just alike: enough geometric inliers (the same printed object,
        verify.py), or a near-copy of one of its photos. Calibrated in docs/search.md."""
        return self.inliers >= settings.same_min_inliers or self.similarity >= settings.same_similarity


def candidates(
    resources: Resources,
    vectors: np.ndarray,
    selection: Selection | None = None,
    columns: Columns | None = None,
    threshold: float | None = None,
) -> list[Candidate]:
    """Offers whose best image is over the threshold for any of the query vectors, best first, capped.
    A `selection` (from the filters) limits the search to the offers that pass them, inside the
    vector store's own search. k grows fourfold while more offers could be over the threshold."""
    settings, store = resources.settings, resources.index
    cap = settings.candidate_cap
    columns = selection.columns if selection is not None else columns or resources.columns.current()
    total = store.searchable(columns, selection)
    if total == 0:
        return []
    if threshold is None:
        threshold = _floor(resources, vectors, columns)
    k = min(total, max(4 * cap, 256))
    while True:
        found = [store.search_offers(vector, k, columns, selection, threshold) for vector in np.atleast_2d(vectors)]
        item_ids, image_ids, scores = (
            np.concatenate(part) for part in zip(*((m.item_ids, m.image_ids, m.scores) for m in found))
        )
        best = _best_per_offer(item_ids, scores)
        if len(best) >= cap or not any(m.more for m in found) or k >= total:
            break
        k = min(total, k * 4)
    best = best[:cap]
    return [
        Candidate(int(i), float(s), int(m), similarity=min(1.0, float(s)))
        for i, s, m in zip(item_ids[best], scores[best], image_ids[best])
    ]


def _floor(resources: Resources, vectors: np.ndarray, columns: Columns) -> float:
    """The similarity a candidate needs: `similarity_threshold`, and within `similarity_margin` of
    the query's best look-alike in the whole catalog. A close photo then leaves out offers that only
    share a style; a hard shop photo, whose best match is weak, keeps its weak matches. Near-copies
    of the query (`same_similarity`: the catalog's own photo, or a relisting of it) do not set the
    bar: a catalog photo would otherwise keep only its own offer, hiding the look-alikes a buyer
    compares next, which follow the copies. The best match is sought without the filters, so a
    filter only ever narrows the answer."""
    settings, store = resources.settings, resources.index
    if settings.similarity_margin <= 0:
        return settings.similarity_threshold
    found = [
        store.search_offers(v, COPIES_SOUGHT + 1, columns, None, settings.similarity_threshold).scores
        for v in np.atleast_2d(vectors)
    ]
    scores = np.concatenate(found) if found else np.zeros(0, np.float32)
    alike = scores[scores < settings.same_similarity]
    top = float(alike.max()) if len(alike) else float(scores.max(initial=0.0))
    return max(settings.similarity_threshold, top - settings.similarity_margin)


def _best_per_offer(item_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Positions of each offer's best match, best first, ties by item_id."""
    order = np.lexsort((item_ids, -scores))
    _, first = np.unique(item_ids[order], return_index=True)
    return order[np.sort(first)]


def rerank(resources: Resources, ranked: list[Candidate], local: verify.LocalFeatures | None) -> list[Candidate]:
    """Raise the top `rerank_k` candidates by their geometric inliers with the query (verify.py)."""
    settings = resources.settings
    if settings.rerank_k <= 0 or local is None or not ranked:
        return ranked
    head = ranked[: settings.rerank_k]
    stored = resources.catalog.local_features([c.image_id for c in head])
    missing = {}
    checked, features = [], []
    for candidate in head:
        blob = stored.get(candidate.image_id)
        if blob is None:  # imported while re-ranking was off: compute once, keep
            blob = missing[candidate.image_id] = _catalog_features(resources, candidate.image_id)
        if blob is not None:
            checked.append(candidate)
            features.append(verify.LocalFeatures.from_bytes(blob))
    for candidate, count in zip(checked, verify.inliers_many(local, features, settings.rerank_min_inliers)):
        candidate.inliers = count
        if count >= settings.rerank_min_inliers:
            candidate.score += settings.rerank_weight * min(count, verify.MAX_INLIERS)
    computed = {k: v for k, v in missing.items() if v is not None}
    if computed:  # photos whose files are gone give nothing to keep: no write for them
        resources.catalog.put_local_features(computed)
    head.sort(key=lambda c: (-c.score, c.item_id))
    return head + ranked[settings.rerank_k :]


def _catalog_features(resources: Resources, image_id: int) -> bytes | None:
    image = resources.catalog.image_by_id(image_id)
    if image is None:
        return None
    try:
        data = resources.catalog.image_file(image.sha256, image.ext).read_bytes()
        return verify.extract(images.decode(data, images.ImageLimits.of(resources.settings))).to_bytes()
    except (OSError, images.ImageError):
        return None


def ranked(
    resources: Resources,
    vectors: np.ndarray,
    local: verify.LocalFeatures | None = None,
    selection: Selection | None = None,
    columns: Columns | None = None,
    threshold: float | None = None,
) -> list[Candidate]:
    """Candidates in similarity order, geometric re-ranking applied: what `default` sort shows."""
    return rerank(resources, candidates(resources, vectors, selection, columns, threshold), local)


def _order(sort: Sort, columns: Columns, rows: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """The candidates' order for a sort: its key, then similarity, then item_id (pages never overlap)."""
    keys: list[np.ndarray] = [item_ids, -scores]
    if sort is Sort.sales:
        keys.append(-columns.sales[rows])
    elif sort is Sort.price_up:
        keys.append(columns.price[rows])
    elif sort is Sort.price_down:
        keys.append(-columns.price[rows])
    return np.lexsort(keys)


def _group_same(resources: Resources, kept: list, mains: np.ndarray) -> tuple[list, dict[int, list[int]]]:
    """Fold offers whose main photos are near-identical into the first (best-placed) of them."""
    if not kept:
        return kept, {}
    try:
        vectors = resources.index.vectors(mains)
    except RuntimeError:  # a main photo not indexed (interrupted import): nothing to fold
        return kept, {}
    similar = vectors @ vectors.T >= resources.settings.twin_similarity
    leaders: list[int] = []
    twins: dict[int, list[int]] = {}
    for i, (item_id, _, _) in enumerate(kept):
        leader = next((j for j in leaders if similar[i, j]), None)
        if leader is None:
            leaders.append(i)
            twins[item_id] = []
        else:
            twins[kept[leader][0]].append(item_id)
    return [kept[i] for i in leaders], twins


def run(
    resources: Resources,
    vectors: np.ndarray,
    *,
    local: verify.LocalFeatures | None = None,
    page: int = 1,
    page_size: int = MAX_PAGE_SIZE,
    sort: Sort = Sort.default,
    filters: Filters = Filters(),
    group_same: bool = False,
    match: str = "all",
    score_threshold: float | None = None,
    today: dt.date | None = None,
    key: str | None = None,
) -> Page:
    """One page of offers. `key` names the query (photo and box): its ranking is then kept while
    the index is unchanged, so later pages, sorts and filters skip search and re-ranking.
    `match="same"` keeps the offers that are the same product; `score_threshold` (0-1) replaces
    the `similarity_threshold` setting for this search."""
    _check_page(page, page_size)
    _check_match(match, score_threshold)
    columns = resources.columns.current()  # one snapshot of the offers' facts for the whole search
    check_category(filters.cat_id, columns.categories)
    where = filters.where(today or dt.date.today(), resources.settings.new_arrival_days)
    selection = resources.columns.select(where, columns)
    ranking = _ranking(resources, vectors, local, selection, columns, key, score_threshold)
    # the category is the photo's, whatever the filters keep: predicted from the unfiltered matches
    # (kept per query too, so the usual search-then-filter costs nothing more)
    everything = ranking if selection is None else _ranking(resources, vectors, local, None, columns, key, score_threshold)
    predicted_from = _still_selected(columns, None, everything)[0]
    if match == "same":
        ranking = ranking.take(ranking.same)
    ranking, rows = _still_selected(columns, selection, ranking)
    order = _order(sort, columns, rows, ranking.scores, ranking.item_ids)
    kept = [(int(ranking.item_ids[i]), int(rows[i]), int(i)) for i in order]
    twins: dict[int, list[int]] = {}
    if group_same:
        kept, twins = _group_same(resources, kept, columns.main_image[[row for _, row, _ in kept]])
    window = kept[(page - 1) * page_size : page * page_size]
    hits = _hits(resources, ranking, window, twins if group_same else None)
    return Page(page, page_size, sort, filters, len(kept), hits, _categories(resources, predicted_from))


def _categories(resources: Resources, ranking: Ranking) -> list[categories.Vote]:
    """The vote of the best matches' category paths (search/categories.py)."""
    best = [int(i) for i in ranking.item_ids[: categories.TOP]]
    docs = resources.catalog.documents(best)
    paths = [json.loads(docs[i][0]).get("category_path") or [] if i in docs else [] for i in best]
    settings = resources.settings
    return categories.vote(
        [[str(c) for c in p] for p in paths],
        [float(s) for s in ranking.similarity[: len(best)]],
        settings.category_vote_floor,
        settings.category_min_evidence,
    )


def _check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise ParameterError("page must be 1 or greater")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ParameterError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def _check_match(match: str, score_threshold: float | None) -> None:
    if match not in MATCHES:
        raise ParameterError(f"match must be one of {', '.join(MATCHES)}; got {match!r}")
    if score_threshold is not None and not 0 <= score_threshold <= 1:
        raise ParameterError(f"score_threshold must be between 0 and 1; got {score_threshold}")


def _ranking(
    resources: Resources,
    vectors: np.ndarray,
    local: verify.LocalFeatures | None,
    selection: Selection | None,
    columns: Columns,
    key: str | None,
    threshold: float | None = None,
) -> Ranking:
    """The candidates in similarity order: kept per query, condition, threshold and index state,
    so later pages and other sorts reuse it; found and re-ranked otherwise."""
    state = (resources.index.generation, resources.catalog.version())
    kept_as = (key, selection.where if selection is not None else None, threshold, state) if key else None
    found = resources.rankings.get(kept_as) if kept_as else None
    if found is not None:
        return found
    best = ranked(resources, vectors, local, selection, columns, threshold)
    settings = resources.settings
    ranking = Ranking(
        item_ids=np.fromiter((c.item_id for c in best), np.int64, len(best)),
        scores=np.fromiter((c.score for c in best), np.float64, len(best)),
        similarity=np.fromiter((c.similarity for c in best), np.float32, len(best)),
        same=np.fromiter((c.same(settings) for c in best), bool, len(best)),
        image_ids=np.fromiter((c.image_id for c in best), np.int64, len(best)),
    )
    if kept_as:
        resources.rankings.put(kept_as, ranking)
    return ranking


def _still_selected(columns: Columns, selection: Selection | None, ranking: Ranking) -> tuple[Ranking, np.ndarray]:
    """The ranking less offers deleted since it was kept (or outside the selection), and their rows."""
    rows = columns.rows_of(ranking.item_ids)
    present = rows >= 0
    if selection is not None:
        present[present] = selection.rows[rows[present]]
    return ranking.take(present), rows[present]


def _hits(
    resources: Resources, ranking: Ranking, window: list[tuple[int, int, int]], twins: dict[int, list[int]] | None
) -> list[Hit]:
    """The page's items from their documents, `img` on this server, with the evidence of each
    match; with group_same, the twins."""
    wanted = [item_id for item_id, _, _ in window]
    docs = resources.catalog.documents(wanted + [t for item_id in wanted for t in (twins or {}).get(item_id, [])])
    matched = resources.catalog.images_by_id([int(ranking.image_ids[at]) for _, _, at in window])
    hits = []
    for item_id, _, at in window:
        if item_id not in docs:  # deleted by a concurrent import
            continue
        doc, image = docs[item_id]
        item = wire_item(doc)
        item["img"] = f"/img/{image.name}"
        same = None if twins is None else [_twin(docs[t][0], t) for t in twins.get(item_id, []) if t in docs]
        hits.append(
            Hit(
                item,
                float(ranking.scores[at]),
                image,
                same,
                similarity=float(ranking.similarity[at]),
                same=bool(ranking.same[at]),
                matched=matched.get(int(ranking.image_ids[at])),
            )
        )
    return hits


def _twin(doc: str, item_id: int) -> dict[str, object]:
    item = Item.model_validate_json(doc)
    return {"item_id": item_id, "price": item.price, "shop_name": item.shop_info.company_name or item.shop_info.login_id}
