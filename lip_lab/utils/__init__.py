"""Small utilities of the tools: atomic writes, tables, charts, complexity counts, malloc settings."""
