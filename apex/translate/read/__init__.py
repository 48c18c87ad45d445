"""Upstream dialect -> neutral: one reader per upstream family (SSE events -> parts, bodies -> ``Reply``)."""
