"""Tools that make and describe the demo zoo: the builder (`build`), the findings of the papers checked on it
(`findings`) and its card (`card`). They train and score models, so they sit above the zoo, evaluation and
analysis layers, not inside `explorer.zoo`."""
