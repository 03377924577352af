"""The Streamlit face of photo-index: search, duplicates, index status (no logic of its own).

`index serve` runs `search_ui/app.py`; the pages call `indexer.search` and `indexer.dedup` only.
"""
