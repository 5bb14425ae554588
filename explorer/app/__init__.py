"""The dashboard's logic without the widgets: controls generated from the method registry, handlers that merge
and evaluate, the per-session run history, exports and shared caches. `app.py` (repo root) wires them to Gradio."""
