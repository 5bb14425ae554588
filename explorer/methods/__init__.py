"""Merge methods. Importing this package registers every method with `registry.register`."""
from . import registry  # noqa: F401
from . import basic, sparse, masks, layerwise, emr  # noqa: F401,I001  (registration order = listing order)
from . import adaptive  # noqa: F401,I001  (data-driven methods: AdaMerging, aTLAS)
