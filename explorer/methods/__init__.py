"""Merge methods. Importing this package registers every method with `registry.register`, and the add-ons
that surgery, twin and wemoe train with `result.register_addon` (so `runs.load_result` can rebuild saved ones).

One module per method family (imported below), beside what they share: `registry`, `params` and `table` (the
declarations), `blocks` and `compose` (the plain merge blocks), `runner` (learned coefficients), `spectral`,
`concrete_mask` and `stats_passes` (SVDs, a Concrete mask, data statistics). `engine/` is the threshold engine
that makes the threshold merges fast without changing their bits."""
# Registration order is the listing order (CLI, dashboard, README), so the imports stay in this order.
# isort: skip_file
from . import registry  # noqa: F401
from . import basic, sparse, masks, layerwise, emr  # noqa: F401
from . import subspace, interference  # noqa: F401  (subspace merges: TSV, Iso-C/CTS, CART, WUDI, DOGE-TA)
from . import adaptive  # noqa: F401  (data-driven methods: AdaMerging, aTLAS)
from . import closed_form, positioning  # noqa: F401  (merges from data statistics: Fisher, RegMean, Self Positioning)
from . import dam  # noqa: F401  (DAM: backdoor-aware Concrete mask merging)
from . import concrete, surgery, twin, wemoe  # noqa: F401  (merges that train small parts at test time)
