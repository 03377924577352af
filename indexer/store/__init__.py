"""Storage: the catalog (SQLite, the truth), its schema and salvage, the writer lock,
the FAISS file derived from it and kept in sync, tombstones, exports."""
