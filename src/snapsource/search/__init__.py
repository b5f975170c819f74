"""Search by image without HTTP: query analysis, filters, then ranking (candidates
filtered inside the vector search -> re-rank -> sort -> page). Reads the store and vision through `Resources`; never imports the API."""

from snapsource.search.filters import FLAGS, Filters, Sort
from snapsource.search.find import find
from snapsource.search.ranking import MAX_PAGE_SIZE, Candidate, Hit, Page, candidates, ranked, rerank, run

__all__ = [
    "FLAGS",
    "MAX_PAGE_SIZE",
    "Candidate",
    "Filters",
    "Hit",
    "Page",
    "Sort",
    "candidates",
    "find",
    "ranked",
    "rerank",
    "run",
]
