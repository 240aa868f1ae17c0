"""Evaluators picked by name: each scores one embedder's embedded splits with one `run`.

`config.evaluators` names the ones a run uses (`registry.py` lists them and checks the
names); `item_jax/evaluation/protocol.py` embeds the splits once (`inputs.py`) and hands
the same inputs to every chosen evaluator, for `python -m item_jax.cli.evaluate` and for
the trainer's periodic validation alike. Every evaluator's `run(inputs) -> {section:
metrics}` returns the metrics dict sections it is responsible for, and only those its
inputs allow (the validation's train split, for one, is embedded without titles only).
"""
