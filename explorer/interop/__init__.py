"""Interop edges: other tools' formats (mergekit YAML configs, PEFT LoRA adapters) read into plans and task
vectors, and written back from merges and run records."""
