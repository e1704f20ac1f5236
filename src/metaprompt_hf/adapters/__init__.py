"""Adapters (library core): several adapters on one base model and the Hub mixin methods for adapter folders
(`multi.py`), and the on-disk adapter pair, read and written as one consistent unit (`files.py`)
(docs/architecture.md §5.1)."""
