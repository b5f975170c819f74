"""TMAPI behind snapsource: the upstream asked for what the local catalog cannot answer, its
answers stored, and its offers kept locally so that more searches are answered here over time
(docs/upstream.md). `connector` calls it, `proxy` decides which answer a search gets, `landing`
queues its items for import."""
