"""The Streamlit face of photo-index: search, duplicates, index status (no logic of its own)."""
