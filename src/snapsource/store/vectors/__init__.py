"""Vector stores: faiss in the data dir (`faiss_store`, its IVF base in `ivf`) or a Milvus collection."""
