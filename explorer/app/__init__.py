"""The dashboard: controls generated from the method registry, handlers that merge and evaluate, the per-session
run history, exports and shared caches (plain modules), the Gradio layout (`ui`, its tool tabs in `tabs`) and
its launcher (`serve`)."""
import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no network calls
