"""Outcomes as values and what becomes of them: results, history, tables, text/markdown/JSON/HTML renderers, trends, notices."""
