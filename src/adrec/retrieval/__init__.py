"""Candidate retrieval: nearest-neighbour search over ad embeddings (exact reference, FAISS approximate)."""

from adrec.retrieval.index import ExactIndex, FaissIndex, VectorIndex, build_index, recall_at_k

__all__ = ["ExactIndex", "FaissIndex", "VectorIndex", "build_index", "recall_at_k"]
