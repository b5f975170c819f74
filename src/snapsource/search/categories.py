"""The query's category: a weighted vote of its best matches' category paths.

Alibaba's image search answers a predicted category with every query, and 1688 takes one to
search within. Here the best `TOP` matches vote down the tree: at each level the heaviest child of
the category chosen so far wins if it holds more than `MAJORITY` of all the votes and at least
`min_evidence` of them, and the prediction is the deepest category that did. Otherwise no
prediction (null), rather than a guess.

A match weighs its similarity above `floor` (the `category_vote_floor` setting): a photo the
catalog does not carry still has best matches, at about that similarity, and a majority of those is
a majority of chance. So an apple photo against a clothing catalog, whose best match is a jacket at
0.30, predicts nothing, where a plain weighted vote gave that one jacket's category all of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

TOP = 10
MAJORITY = 0.5


@dataclasses.dataclass(frozen=True)
class Vote:
    cat_id: str
    share: float  # of all the votes' weight

    def wire(self) -> dict[str, object]:
        return {"cat_id": wire_id(self.cat_id), "share": round(self.share, 3)}


def vote(
    paths: Sequence[Sequence[str]], similarities: Sequence[float], floor: float = 0.0, min_evidence: float = 0.0
) -> list[Vote]:
    """The winner of each level, from the top, while it holds a clear majority of the weight (each
    match's similarity above `floor`) and at least `min_evidence` of it."""
    weights = [max(0.0, s - floor) for s in similarities]
    total = sum(weights)
    if total <= 0:
        return []
    chosen: list[Vote] = []
    level = 0
    while True:
        tally: dict[str, float] = {}
        for path, weight in zip(paths, weights):
            if weight > 0 and len(path) > level and all(path[i] == chosen[i].cat_id for i in range(level)):
                tally[path[level]] = tally.get(path[level], 0.0) + weight
        if not tally:
            return chosen
        winner, weight = max(tally.items(), key=lambda kv: (kv[1], kv[0]))
        if weight / total <= MAJORITY or weight < min_evidence:
            return chosen
        chosen.append(Vote(winner, weight / total))
        level += 1


def predicted(votes: Sequence[Vote]) -> str | None:
    return votes[-1].cat_id if votes else None


def wire_id(cat_id: str | None) -> int | str | None:
    """1688's category ids are numbers on the wire; a catalog's own names stay text."""
    return int(cat_id) if cat_id is not None and cat_id.isdigit() else cat_id
