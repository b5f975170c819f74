"""Everything kept: the catalog database (SQLite or PostgreSQL) and its migrations, the filter
columns read from it, vectors (faiss in the data dir or Milvus), query images and kept rankings.
Every SQL statement of the package lives here."""
