"""Every command line of item_jax, one module each: `python -m item_jax.cli.NAME --help`.

  main_job             the embedded catalog end to end: generate, convert, pretrain, evaluate
  train                pretrain (resumes; SIGTERM saves; multi-host via jax.distributed)
  convert              catalog manifest -> TFRecord shards, tokenizer, dataset_info.json
  verify               check every shard's framing and CRCs against dataset_info.json
  evaluate             same-product search and category prediction, beside the references
  export               a checkpoint's parameters -> an export directory
  embed                embed a manifest's listings with an export
  ablation             train and evaluate the ablation variants, tabulate
  bench                benchmarks printing JSON (train step, input pipeline, memorisation)
  build_emoji_catalog  the emoji product set from its npm packages

All use absl flags, defined in `define_flags()` and read in `main(argv)`, so importing a
command module defines nothing. The work itself is library code elsewhere in the package.
"""
