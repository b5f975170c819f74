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

import numpy as np

from snapsource.errors import ParameterError
from snapsource.offer import Item, wire_item
from snapsource.resources import Resources
from snapsource.search.filters import Filters, Sort
from snapsource.store.catalog import StoredImage
from snapsource.store.columns import Columns, Selection
from snapsource.vision import images, verify

MAX_PAGE_SIZE = 20


@dataclasses.dataclass(frozen=True)
class Hit:
    doc: dict[str, object]  # the item in the API's schema, `img` relative to the server
    score: float
    image: StoredImage
    same_product: list[dict[str, object]] | None = None  # group_same: the folded relistings

    @property
    def item(self) -> Item:
        return Item.model_validate(self.doc)

    def wire(self, base_url: str) -> dict[str, object]:
        """The item as the API returns it, `img` made absolute with `base_url`; with group_same,
        `same_product` (the relistings folded into it) follows the spec's fields."""
        item = {**self.doc, "img": base_url + str(self.doc["img"])}
        if self.same_product is not None:
            item["same_product"] = self.same_product
        return item


@dataclasses.dataclass(frozen=True)
class Page:
    page: int
    page_size: int
    sort: Sort
    filters: Filters
    total_count: int
    hits: list[Hit]

    @property
    def has_next_page(self) -> bool:
        return self.page * self.page_size < self.total_count


@dataclasses.dataclass
class Candidate:
    item_id: int
    score: float
    image_id: int  # the offer's image that matched best
    inliers: int = 0


def candidates(
    resources: Resources, vectors: np.ndarray, selection: Selection | None = None, columns: Columns | None = None
) -> list[Candidate]:
    """Offers whose best image is over the threshold for any of the query vectors, best first, capped.
    A `selection` (from the filters) limits the search to the offers that pass them, inside the
    vector store's own search. k grows fourfold while more offers could be over the threshold."""
    settings, store = resources.settings, resources.index
    cap, threshold = settings.candidate_cap, settings.similarity_threshold
    columns = selection.columns if selection is not None else columns or resources.columns.current()
    total = store.searchable(columns, selection)
    if total == 0:
        return []
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
    return [Candidate(int(i), float(s), int(m)) for i, s, m in zip(item_ids[best], scores[best], image_ids[best])]


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
) -> list[Candidate]:
    """Candidates in similarity order, geometric re-ranking applied: what `default` sort shows."""
    return rerank(resources, candidates(resources, vectors, selection, columns), local)


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
    today: dt.date | None = None,
    key: str | None = None,
) -> Page:
    """One page of offers. `key` names the query (photo and box): its ranking is then kept while
    the index is unchanged, so later pages, sorts and filters skip search and re-ranking."""
    _check_page(page, page_size)
    columns = resources.columns.current()  # one snapshot of the offers' facts for the whole search
    where = filters.where(today or dt.date.today(), resources.settings.new_arrival_days)
    selection = resources.columns.select(where, columns)
    item_ids, scores = _ranking(resources, vectors, local, selection, columns, key)
    item_ids, scores, rows = _still_selected(columns, selection, item_ids, scores)
    order = _order(sort, columns, rows, scores, item_ids)
    kept = [(int(item_ids[i]), int(rows[i]), float(scores[i])) for i in order]
    twins: dict[int, list[int]] = {}
    if group_same:
        kept, twins = _group_same(resources, kept, columns.main_image[[row for _, row, _ in kept]])
    window = kept[(page - 1) * page_size : page * page_size]
    return Page(page, page_size, sort, filters, len(kept), _hits(resources, window, twins if group_same else None))


def _check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise ParameterError("page must be 1 or greater")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ParameterError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


def _ranking(
    resources: Resources,
    vectors: np.ndarray,
    local: verify.LocalFeatures | None,
    selection: Selection | None,
    columns: Columns,
    key: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, scores) in similarity order: kept per query, condition and index state, so later
    pages and other sorts reuse it; found and re-ranked otherwise."""
    state = (resources.index.generation, resources.catalog.version())
    kept_as = (key, selection.where if selection is not None else None, state) if key else None
    found = resources.rankings.get(kept_as) if kept_as else None
    if found is not None:
        return found
    best = ranked(resources, vectors, local, selection, columns)
    item_ids = np.fromiter((c.item_id for c in best), np.int64, len(best))
    scores = np.fromiter((c.score for c in best), np.float64, len(best))
    if kept_as:
        resources.rankings.put(kept_as, item_ids, scores)
    return item_ids, scores


def _still_selected(
    columns: Columns, selection: Selection | None, item_ids: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ranking less offers deleted since it was kept (or outside the selection), with their rows."""
    rows = columns.rows_of(item_ids)
    present = rows >= 0
    if selection is not None:
        present[present] = selection.rows[rows[present]]
    return item_ids[present], scores[present], rows[present]


def _hits(resources: Resources, window: list[tuple[int, int, float]], twins: dict[int, list[int]] | None) -> list[Hit]:
    """The page's items from their documents, `img` on this server; with group_same, the twins."""
    wanted = [item_id for item_id, _, _ in window]
    docs = resources.catalog.documents(wanted + [t for item_id in wanted for t in (twins or {}).get(item_id, [])])
    hits = []
    for item_id, _, score in window:
        if item_id not in docs:  # deleted by a concurrent import
            continue
        doc, image = docs[item_id]
        item = wire_item(doc)
        item["img"] = f"/img/{image.name}"
        same = None if twins is None else [_twin(docs[t][0], t) for t in twins.get(item_id, []) if t in docs]
        hits.append(Hit(item, score, image, same))
    return hits


def _twin(doc: str, item_id: int) -> dict[str, object]:
    item = Item.model_validate_json(doc)
    return {"item_id": item_id, "price": item.price, "shop_name": item.shop_info.company_name or item.shop_info.login_id}
