"""Interop formats, at the edges: mergekit YAML configs in (a plan run tensor by tensor) and run records out."""
