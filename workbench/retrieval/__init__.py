"""Retrieval indexes over item embeddings: the first stage of a two-stage recommender.

One small interface (build, search a batch of query vectors for the top k while excluding
each user's seen items, add items online, memory size, save/load), inner product or cosine,
with an exact backend (blocked torch matmul + top-k) and approximate faiss backends.
"""
