"""Defaults shared by every config: one place that names every field.

A config file calls `default_config()` and overrides what its size or variant changes.
`item_jax.config_check.check_config` validates the result at start-up.
"""

import ml_collections

from item_jax.configs.objective_names import ITEM_OBJECTIVES, OBJECTIVE_NAMES
from item_jax.evaluation.evaluators import registry as evaluator_registry

# ITEM_OBJECTIVES: the five objectives of ITEm (docs/design.md, "Objectives"); "contrastive" is this
# project's extension beyond the paper (docs/design.md, docs/experiments.md). The table of
# objectives is `item_jax/objectives.py`; configs import only their names, without JAX.


def default_config() -> ml_collections.ConfigDict:
    """Returns the tiny model with all five objectives; size configs override `model`."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.image_size = 64  # S: images are S x S.
    config.model.patch_size = 8  # P: patches are P x P.
    config.model.max_text_len = 32  # L: text slots, [CLS] and [SEP] included.
    config.model.vocab_size = 8000
    config.model.num_layers = 4
    config.model.hidden_dim = 256
    config.model.num_heads = 4
    config.model.mlp_dim = 1024
    config.model.embed_dim = 256  # Product embedding width (after projection).
    config.model.dropout_rate = 0.0
    config.model.compute_dtype = "float32"  # "bfloat16": bf16 compute, float32 params.
    config.model.remat = False  # Rematerialise each block in the backward pass.
    # jax.nn.dot_product_attention's kernel: "" (JAX chooses), "xla", or "cudnn" (NVIDIA GPUs,
    # bfloat16 compute).
    config.model.attention_implementation = ""
    # The block layout, as the checkpoint the run starts from has it (item_jax/model.py):
    # "pre" (ViT, the default) or "post" (BERT); BERT's LayerNorm over the text embeddings;
    # LayerNorm epsilon; GELU "tanh" (approximate) or "exact" (erf, BERT's and ViT's "gelu").
    config.model.block_norm = "pre"
    config.model.text_embedding_norm = False
    config.model.layer_norm_epsilon = 1e-6
    config.model.gelu = "tanh"
    # Patch embeddings: "conv" (a stack of stride-2 3x3 convolutions down to the patch
    # grid; `ConvStem` in item_jax/model.py; needs a power-of-two patch size) or "linear"
    # (ViT's one linear map per patch; what a ViT checkpoint imports into). With a linear
    # stem the image side did not learn at the main job's budget (docs/experiments.md, C04).
    config.model.patch_stem = "conv"
    # The product embedding (`ItemModel.embed`, what evaluation, export, `embed` and search
    # use): "views" concatenates the embeddings of the title alone and of the photo alone
    # (each a pass of the one stream, as the contrastive views are), so neither is
    # neglected; "fused" is the `[CLS]` of one pass over both, which the ITM head reads.
    # With "fused" the trained embedding carried little of the title (docs/experiments.md,
    # section 9). The width is 2 x embed_dim with "views".
    config.model.product_embedding = "views"
    # The title half of "views": the projected "mean" of the title pass's final states over
    # its real slots, or its "cls" state (what the contrastive title view trains), or "auto":
    # whichever of the two finds the product more often on the run's validation split,
    # measured at the end of training and written into the workdir's config.json. For the
    # same parameters the mean was ahead on the embedded catalog (validation R@1 0.761
    # against 0.685) and the `[CLS]` on the emoji set (0.589 against 0.524 and 0.542
    # against 0.368 over two seeds; docs/experiments.md, sections 10 and 15). It changes
    # the embedding only, not training.
    config.model.title_pooling = "auto"

    # Start from pretrained checkpoints instead of random weights (item_jax/interop/):
    # text_from: a Hugging Face BERT directory (config.json, model.safetensors, vocab.txt);
    # vision_from: a Hugging Face ViT directory (config.json, model.safetensors). The
    # transformer blocks come from `encoder_from` ("text" or "vision"; "" = the only one
    # given). Ignored when the workdir already has a checkpoint (the run resumes).
    config.init = ml_collections.ConfigDict()
    config.init.text_from = ""
    config.init.vision_from = ""
    config.init.encoder_from = ""

    # Which objectives run, and their weights in the summed loss. The default recipe is the
    # five ITEm objectives plus the contrastive extension (docs/experiments.md); the paper's
    # five alone: `--config.objectives=itm,mlm,mim,gmlm,gmim`.
    config.objectives = ITEM_OBJECTIVES + ",contrastive"
    config.loss_weights = ml_collections.ConfigDict({name: 1.0 for name in OBJECTIVE_NAMES})
    # Extension beyond the paper (objective "contrastive"): InfoNCE between the product
    # embedding of each (masked) listing and the embeddings of other views of it, with the
    # rest of the global batch as negatives. Views: "title" (the title alone), "image" (the
    # photo alone), "remask" (the whole listing under a second, independent masking).
    config.contrastive = ml_collections.ConfigDict()
    config.contrastive.views = "title,image"
    # 0.05 rather than 0.1: on the embedded catalog it lifted same-product search on both
    # seeds (validation R@1 +0.04 and +0.08); on the emoji set it cost R@1 on one seed of two
    # (docs/experiments.md, section 12, EY5). Stored runs keep theirs in config.json.
    config.contrastive.temperature = 0.05
    # The title view's pieces in random order: titles are bags of attributes, and two
    # listings of one product word them in different orders.
    config.contrastive.shuffle_title = False
    # The image view is a random square crop of this much of the side or more (1.0: none),
    # resized back and mirrored half of the time.
    config.contrastive.image_crop_min_scale = 1.0
    # Views also set against each other, as "FIRST-SECOND" pairs (both in `views`):
    # "title-image" is CLIP's title <-> photo InfoNCE, weighted by `cross_view_weight`. The
    # photo then has to show what the title says, not only match its own pixels in the
    # listing (docs/experiments.md, section 7); "" turns it off.
    config.contrastive.cross_views = "title-image"
    config.contrastive.cross_view_weight = 1.0
    # Views of `views` that are not matched against the listing itself, only through their
    # `cross_views` pairs ("image": the photo is pulled to the title alone;
    # docs/experiments.md EC5).
    config.contrastive.cross_only_views = ""
    # > 0: the negatives most like the anchor weigh most (objectives.info_nce). Off by default:
    # the title <-> photo pair cannot tell apart siblings that share a category (their titles
    # differ in words the photo does not show), and weighting those negatives up slowed the
    # photo's learning of the category (docs/experiments.md, section 8).
    config.contrastive.hard_negative_beta = 0.0
    # MIM/GMIM targets are per-patch normalised pixels: (p - mean) / sqrt(var + this), with
    # pixels in [-1, 1]. MAE's 1e-6 turns flat patches into magnified JPEG noise.
    config.mim_target_variance_eps = 0.01
    # Inputs the model sees: "text,image", "text" (text-only baseline) or "image".
    config.modalities = "text,image"

    config.masking = ml_collections.ConfigDict()
    config.masking.mode = "joint"  # or "modality_aware".
    config.masking.text_rate = 0.15  # Fraction of title tokens selected (MLM, GMLM).
    # Fraction of patches selected (MIM, GMIM). ITM reads the same masked pass, so each
    # masked patch is one it cannot compare with the title (docs/experiments.md, section 8).
    config.masking.image_rate = 0.25
    config.masking.itm_negative_fraction = 0.5
    # ITM's mismatched partners and the contrastive negatives of a listing are drawn from
    # the listings of its own seller in the batch (the manifest's optional "seller"; a
    # catalog without sellers is one seller, and this changes nothing). A listing's
    # positives are always its own seller's, so with negatives from every seller "which
    # seller" (a title template, an art style) solves much of both losses and is what
    # they teach (docs/experiments.md, section 11).
    config.same_seller_negatives = True
    # Where an ITM negative's image comes from: "global", any example of the global batch;
    # "shard", an example of the same data-parallel device's block of the batch (B / (data x
    # fsdp) examples). A partner from the global batch costs an all-gather of the images over every
    # data-parallel device each step, growing with the batch; one from the shard costs nothing
    # (docs/launch.md). The pod configs draw from the shard.
    config.masking.itm_partners = "global"
    # modality_aware: per example, one of (heavy text, heavy image, light both).
    config.masking.heavy_text_rate = 0.5
    config.masking.heavy_image_rate = 0.75
    config.masking.light_text_rate = 0.1
    config.masking.light_image_rate = 0.2

    config.data = ml_collections.ConfigDict()
    config.data.dir = ""  # TFRecord shards + dataset_info.json.
    config.data.shuffle_buffer = 2048  # Examples, per stream.
    config.data.prefetch_batches = 2  # Global arrays kept ahead of the step.
    # The train split is read as this many streams (a multiple of the process count; 0: one
    # per process). The data order depends on it and the seed, not on the hardware.
    config.data.num_streams = 0
    # > 0: each training batch (of each stream) is drawn from one of this many buckets that
    # sellers are hashed into, so a listing's own-seller negatives (`same_seller_negatives`)
    # are most or all of the batch, not its seller's share of it: on the emoji set (three
    # vendors) validation R@1 rose on both seeds, by 0.10 and 0.04 (docs/experiments.md,
    # section 14). 0: batches of any sellers. A catalog without sellers is one seller, and
    # its batches are the same either way. A stream holds up to this many partial batches
    # of serialized records.
    config.data.seller_buckets = 16
    # A record that fails to read (bad CRC or framing) in any split: "stop" naming the shard,
    # or "skip": read each broken shard only up to its first bad record, counting what is
    # left out per file; training, validation and evaluation read the same records
    # (item_jax/data/readable_records.py; needs per-shard records).
    config.data.on_corrupt_record = "stop"

    config.global_batch_size = 32
    config.total_steps = 300

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 50
    config.optimizer.end_learning_rate_fraction = 0.05
    config.optimizer.weight_decay = 0.05
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.grad_clip_norm = 1.0

    # Mesh: axis sizes, -1 fills with the remaining devices. The batch is split over
    # data x fsdp; parameters over fsdp (and tensor for heads / MLP).
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))

    config.log_every_steps = 20
    config.checkpoint_every_steps = 200
    config.keep_checkpoints = 3
    config.eval_every_steps = 0  # 0: evaluate only at the end.
    # The evaluators that `python -m item_jax.cli.evaluate` and the periodic validation run,
    # by name (item_jax/evaluation/evaluators/registry.py); the default is every one of them.
    config.evaluators = evaluator_registry.DEFAULT
    config.stop_on_nonfinite = True  # False: skip the step instead.
    return config
