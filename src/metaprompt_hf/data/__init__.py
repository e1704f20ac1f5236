"""Data (training side): loading every supported layout into one `ImageClassificationData` (`loading.py`), the
standard benchmark readers (`readers/`), decoded images (`images.py`), training and evaluation batches
(`batches.py`), the Hub sources of the paper's datasets (`sources.py`) and safe archive extraction
(`extraction.py`) (docs/architecture.md §2)."""
