"""Chinese translation tables, one module per page (zh_<page>.py, a dict named ZH keyed by English text)."""
