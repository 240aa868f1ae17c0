"""Every command line of item_jax, one module each: `python -m item_jax.cli.NAME --help`.

  main_job             the embedded catalog end to end: generate, convert, pretrain, evaluate
  train                pretrain (resumes; SIGTERM saves; multi-host via jax.distributed)
  convert              catalog manifest -> TFRecord shards, tokenizer, dataset_info.json
  verify               check every shard's framing and CRCs (and, --images, every image)
  evaluate             same-product search and category prediction, beside the references
  export               a checkpoint's parameters -> an export directory (msgpack/safetensors)
  embed                embed a manifest's listings with an export (.npy, or Parquet parts
                       written by every process of a job)
  build_ann_index      the faiss serving index from Parquet parts, with its recall
  search               a new listing's nearest products in an embedded catalog (parts
                       or the faiss index)
  ablation             train and evaluate the ablation variants, tabulate
  bench                benchmarks printing JSON (train step, input pipeline, memorisation,
                       vs-peer, search)
  compile              the train step compiled for a TPU slice on this machine: memory per
                       chip, FLOPs, roofline bound, collectives (needs libtpu, a test extra)
  build_emoji_catalog  the emoji product set from its npm packages
  build_synthetic_catalog  the embedded procedural catalog, at any size

All use absl flags, defined in `define_flags()` and read in `main(argv)`, so importing a
command module defines nothing. Orchestration only a command needs (the main job's
stages, the ablation's loop) lives in its module; the building blocks are library code
elsewhere in the package.
"""
