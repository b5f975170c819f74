"""snapsource: self-hosted search-products-by-image, wire-compatible with TMAPI's 1688 image search."""

__version__ = "0.1.0"
__all__ = ["__version__"]
