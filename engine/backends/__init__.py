"""Search backends behind one interface: exact scan, HNSW graph, Milvus collection."""
