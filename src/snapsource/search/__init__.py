"""Search by image without HTTP: query analysis, filters, then ranking (candidates -> filters ->
sort -> page). Reads the store and vision through `Resources`; never imports the API."""

from snapsource.search.filters import FLAGS, Filters, Sort
from snapsource.search.ranking import MAX_PAGE_SIZE, Candidate, Hit, Page, candidates, ranked, rerank, run

__all__ = ["FLAGS", "MAX_PAGE_SIZE", "Candidate", "Filters", "Hit", "Page", "Sort", "candidates", "ranked", "rerank", "run"]
