"""The objectives' names, importable without JAX: what `config.objectives` and
`config.loss_weights` name. `item_jax/objectives.py` holds the objective behind each name."""

# ITEm's five objectives, the paper's set, in the order of the objectives' table.
ITEM_OBJECTIVE_NAMES = ("itm", "mlm", "mim", "gmlm", "gmim")
# Every objective: ITEm's five and this project's extension beyond the paper.
OBJECTIVE_NAMES = (*ITEM_OBJECTIVE_NAMES, "contrastive")
# ITEm's five as a `config.objectives` value.
ITEM_OBJECTIVES = ",".join(ITEM_OBJECTIVE_NAMES)
