"""Hub I/O (library core): the generated model card and `push_to_hub` (`card.py`), result entries as the card reads
them (`results.py`), and what the Hugging Face cache holds and how it breaks (`cache.py`) (docs/architecture.md
§5.2)."""
