"""The model (library core): `MetaPromptConfig`, `MetaPromptModel` and its output, the prompt injection into the
frozen base model, the coupled logits and the adapter's own loss, keeping the base model frozen
(docs/architecture.md §2, docs/method.md §1-§2, §5)."""
