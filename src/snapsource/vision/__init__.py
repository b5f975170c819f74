"""Images in, vectors out: fetching and decoding photos, the embedding model (onnxruntime or
torch), product boxes (localise), local features for geometric verification (verify)."""
