"""Interop edges: other tools' formats read into task vectors and written back from merges."""
