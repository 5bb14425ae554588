"""The demo zoo in one place: its loader (`zoo`, registered as "demo"), task generators (`data`), shipped weights and
card (`weights/`, package data), and the tools that make and describe it: the builder (`build`, `backdoor`), the recipe
probe (`probe`), the findings of the papers checked on it (`findings`) and its card (`card`).

Imports run one way inside the package too: `zoo` and `data` (and this file, which imports nothing) sit at the zoo
layer, so `explorer.zoo` registers the demo loader without reaching up; the tools train and score models, so they sit
above the zoo, evaluation and analysis layers and import `zoo` and `data`, never the reverse (`tests/test_layering.py`
lists `demozoo.zoo` and `demozoo.data` as sub-layers).
"""
