"""Start-up validation of a config: every bad value fails with a message naming its field."""

from item_jax.errors import ItemJaxError
from item_jax.evaluation.evaluators import registry as evaluator_registry
from item_jax.model import (
    AUTO_TITLE_POOLING,
    BLOCK_NORMS,
    GELUS,
    PATCH_STEMS,
    PRODUCT_EMBEDDINGS,
    TITLE_POOLINGS,
)
from item_jax.objectives import (
    CONTRASTIVE_VIEW_NEEDS,
    OBJECTIVE_NAMES,
    OBJECTIVES_BY_NAME,
    parse_view_pairs,
    parse_views,
)

MODALITY_NAMES = ("text", "image")
MASKING_MODES = ("joint", "modality_aware")
ITM_PARTNERS = ("global", "shard")
COMPUTE_DTYPES = ("float32", "bfloat16")


class ConfigError(ItemJaxError, ValueError):
    """A config value that cannot work; the message names the field."""


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config.{field}: {message}")


def _names(value: str) -> list[str]:
    return [name.strip() for name in str(value).split(",") if name.strip()]


def check_config(config) -> None:
    """Checks what can be checked without devices or data."""
    model = config.model
    _require(model.patch_size > 0, "model.patch_size", f"must be positive, got {model.patch_size}")
    _require(
        model.image_size % model.patch_size == 0,
        "model.patch_size",
        f"patch size {model.patch_size} does not divide image size {model.image_size}",
    )
    _require(
        model.hidden_dim % model.num_heads == 0,
        "model.num_heads",
        f"{model.num_heads} heads do not divide hidden_dim {model.hidden_dim}",
    )
    _require(
        model.max_text_len >= 3,
        "model.max_text_len",
        f"needs room for [CLS], one piece and [SEP], got {model.max_text_len}",
    )
    _require(model.vocab_size > 5, "model.vocab_size", f"too small: {model.vocab_size}")
    _require(
        model.compute_dtype in COMPUTE_DTYPES,
        "model.compute_dtype",
        f"{model.compute_dtype!r} is not one of {COMPUTE_DTYPES}",
    )
    _require(
        0.0 <= model.dropout_rate < 1.0,
        "model.dropout_rate",
        f"must be in [0, 1), got {model.dropout_rate}",
    )
    _require(
        model.block_norm in BLOCK_NORMS,
        "model.block_norm",
        f"{model.block_norm!r} is not one of {BLOCK_NORMS}",
    )
    _require(
        model.patch_stem in PATCH_STEMS,
        "model.patch_stem",
        f"{model.patch_stem!r} is not one of {PATCH_STEMS}",
    )
    _require(
        model.product_embedding in PRODUCT_EMBEDDINGS,
        "model.product_embedding",
        f"{model.product_embedding!r} is not one of {PRODUCT_EMBEDDINGS}",
    )
    _require(
        model.title_pooling in TITLE_POOLINGS + (AUTO_TITLE_POOLING,),
        "model.title_pooling",
        f"{model.title_pooling!r} is not one of {TITLE_POOLINGS + (AUTO_TITLE_POOLING,)}",
    )
    if model.patch_stem == "conv":
        _require(
            model.patch_size >= 2 and model.patch_size & (model.patch_size - 1) == 0,
            "model.patch_size",
            f"the conv stem halves the photo log2(P) times: P must be "
            f"a power of two >= 2, got {model.patch_size}",
        )
    _require(
        model.gelu in GELUS,
        "model.gelu",
        f"{model.gelu!r} is not one of {tuple(GELUS)}",
    )
    _require(
        model.layer_norm_epsilon > 0,
        "model.layer_norm_epsilon",
        f"must be positive, got {model.layer_norm_epsilon}",
    )
    _require(
        config.init.encoder_from in ("", "text", "vision"),
        "init.encoder_from",
        f"{config.init.encoder_from!r} is not one of '', 'text', 'vision'",
    )

    objectives = _names(config.objectives)
    _require(bool(objectives), "objectives", "no objective enabled")
    for name in objectives:
        _require(
            name in OBJECTIVE_NAMES,
            "objectives",
            f"unknown objective {name!r}; known: {', '.join(OBJECTIVE_NAMES)}",
        )
        _require(
            name in config.loss_weights and config.loss_weights[name] >= 0,
            f"loss_weights.{name}",
            "needs a non-negative weight for an enabled objective",
        )
    _require(
        len(set(objectives)) == len(objectives),
        "objectives",
        f"names an objective twice: {config.objectives!r}",
    )
    _require(
        config.mim_target_variance_eps > 0,
        "mim_target_variance_eps",
        f"must be positive, got {config.mim_target_variance_eps}",
    )

    modalities = _names(config.modalities)
    _require(
        bool(modalities) and all(m in MODALITY_NAMES for m in modalities),
        "modalities",
        f"{config.modalities!r} must name one or both of {MODALITY_NAMES}",
    )
    for name in objectives:
        for modality in OBJECTIVES_BY_NAME[name].needs:
            _require(
                modality in modalities,
                "objectives",
                f"{name} needs the {modality} modality, but config.modalities is "
                f"{config.modalities!r}",
            )

    if "contrastive" in objectives:
        views = _names(config.contrastive.views)
        _require(
            bool(views) and all(view in CONTRASTIVE_VIEW_NEEDS for view in views),
            "contrastive.views",
            f"{config.contrastive.views!r} must name some of {tuple(CONTRASTIVE_VIEW_NEEDS)}",
        )
        for view in views:
            for modality in CONTRASTIVE_VIEW_NEEDS[view]:
                _require(
                    modality in modalities,
                    "contrastive.views",
                    f"view {view!r} needs the {modality} modality, but config.modalities is "
                    f"{config.modalities!r}",
                )
        _require(
            config.contrastive.temperature > 0,
            "contrastive.temperature",
            f"must be positive, got {config.contrastive.temperature}",
        )
        min_scale = config.contrastive.image_crop_min_scale
        _require(
            0.0 < min_scale <= 1.0,
            "contrastive.image_crop_min_scale",
            f"must be in (0, 1] (1: no crop), got {min_scale}",
        )
        try:
            pairs = parse_view_pairs(config.contrastive.cross_views)
        except ValueError as error:
            raise ConfigError(f"config.contrastive.cross_views: {error}") from None
        for pair in pairs:
            _require(
                pair[0] != pair[1] and all(view in views for view in pair),
                "contrastive.cross_views",
                f"pair {'-'.join(pair)!r} must join two different views of "
                f"config.contrastive.views ({config.contrastive.views!r})",
            )
        cross_only = parse_views(config.contrastive.cross_only_views)
        _require(
            all(view in views for view in cross_only),
            "contrastive.cross_only_views",
            f"{config.contrastive.cross_only_views!r} must name views of "
            f"config.contrastive.views ({config.contrastive.views!r})",
        )
        unpaired = [view for view in cross_only if not any(view in pair for pair in pairs)]
        _require(
            not unpaired,
            "contrastive.cross_only_views",
            f"view(s) {unpaired} would be matched with nothing: pair them in cross_views",
        )
        _require(
            config.contrastive.cross_view_weight >= 0,
            "contrastive.cross_view_weight",
            f"must be >= 0, got {config.contrastive.cross_view_weight}",
        )

    masking = config.masking
    _require(
        masking.mode in MASKING_MODES,
        "masking.mode",
        f"{masking.mode!r} is not one of {MASKING_MODES}",
    )
    for field in (
        "text_rate",
        "image_rate",
        "heavy_text_rate",
        "heavy_image_rate",
        "light_text_rate",
        "light_image_rate",
    ):
        rate = masking[field]
        _require(0.0 < rate <= 1.0, f"masking.{field}", f"must be in (0, 1], got {rate}")
    _require(
        0.0 <= masking.itm_negative_fraction < 1.0,
        "masking.itm_negative_fraction",
        f"must be in [0, 1), got {masking.itm_negative_fraction}",
    )
    _require(
        masking.itm_partners in ITM_PARTNERS,
        "masking.itm_partners",
        f"{masking.itm_partners!r} is not one of {ITM_PARTNERS}",
    )

    _require(
        config.global_batch_size > 0,
        "global_batch_size",
        f"must be positive, got {config.global_batch_size}",
    )
    _require(config.total_steps > 0, "total_steps", f"must be positive, got {config.total_steps}")
    _require(config.optimizer.learning_rate > 0, "optimizer.learning_rate", "must be positive")
    _require(config.optimizer.warmup_steps >= 0, "optimizer.warmup_steps", "must be >= 0")
    _require(config.checkpoint_every_steps > 0, "checkpoint_every_steps", "must be positive")
    _require(config.log_every_steps > 0, "log_every_steps", "must be positive")
    _require(config.keep_checkpoints > 0, "keep_checkpoints", "must be positive")
    num_streams = config.data.num_streams
    _require(
        isinstance(num_streams, int) and num_streams >= 0,
        "data.num_streams",
        f"must be a whole number >= 0 (0: one stream per process), got {num_streams!r}",
    )
    _require(
        num_streams == 0 or config.global_batch_size % num_streams == 0,
        "data.num_streams",
        f"{num_streams} streams do not divide global_batch_size {config.global_batch_size}",
    )
    seller_buckets = config.data.seller_buckets
    _require(
        isinstance(seller_buckets, int)
        and not isinstance(seller_buckets, bool)
        and seller_buckets >= 0,
        "data.seller_buckets",
        f"must be a whole number >= 0 (0: batches of any sellers), got {seller_buckets!r}",
    )
    attention = config.model.attention_implementation
    _require(
        attention in ("", "xla", "cudnn"),
        "model.attention_implementation",
        f"must be '', 'xla' or 'cudnn', got {attention!r}",
    )
    _require(
        attention != "cudnn" or config.model.compute_dtype == "bfloat16",
        "model.attention_implementation",
        "'cudnn' needs model.compute_dtype='bfloat16'",
    )
    on_corrupt = config.data.on_corrupt_record
    _require(
        on_corrupt in ("stop", "skip"),
        "data.on_corrupt_record",
        f"must be 'stop' or 'skip', got {on_corrupt!r}",
    )
    evaluators = evaluator_registry.parse_names(config.evaluators)
    _require(
        bool(evaluators),
        "evaluators",
        f"no evaluator chosen; known: {', '.join(evaluator_registry.NAMES)}",
    )
    try:
        evaluator_registry.check_names(evaluators)
    except evaluator_registry.UnknownEvaluatorError as error:
        raise ConfigError(f"config.evaluators: {error}") from None
    _require(
        len(set(evaluators)) == len(evaluators),
        "evaluators",
        f"names an evaluator twice: {config.evaluators!r}",
    )
    for axis in ("data", "fsdp", "tensor"):
        _require(axis in config.mesh, f"mesh.{axis}", "missing mesh axis")
        _require(
            config.mesh[axis] == -1 or config.mesh[axis] > 0,
            f"mesh.{axis}",
            f"must be positive or -1, got {config.mesh[axis]}",
        )


def check_config_against_mesh(config, mesh, process_count: int = 1) -> None:
    """Checks the divisibility constraints that the resolved mesh imposes."""
    model = config.model
    data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
    _require(
        config.global_batch_size % data_parallel == 0,
        "global_batch_size",
        f"{config.global_batch_size} is not divisible by the data-parallel size "
        f"{data_parallel} (mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']})",
    )
    _require(
        config.global_batch_size % process_count == 0,
        "global_batch_size",
        f"{config.global_batch_size} is not divisible by the {process_count} processes",
    )
    num_streams = config.data.num_streams
    _require(
        num_streams % process_count == 0,
        "data.num_streams",
        f"{num_streams} streams are not a multiple of the {process_count} processes "
        "(each process reads the same number of streams)",
    )
    fsdp, tensor = mesh.shape["fsdp"], mesh.shape["tensor"]
    _require(
        model.hidden_dim % fsdp == 0,
        "model.hidden_dim",
        f"{model.hidden_dim} is not divisible by mesh.fsdp={fsdp}",
    )
    for field in ("num_heads", "mlp_dim", "vocab_size"):
        _require(
            model[field] % tensor == 0,
            f"model.{field}",
            f"{model[field]} is not divisible by mesh.tensor={tensor}",
        )


def check_config_against_data(config, dataset_info: dict) -> None:
    """Checks the model against the converted catalog's tokenizer."""
    tokenizer_vocab = dataset_info["tokenizer"]["vocab_size"]
    _require(
        config.model.vocab_size >= tokenizer_vocab,
        "model.vocab_size",
        f"{config.model.vocab_size} is smaller than the tokenizer's {tokenizer_vocab} "
        "pieces in the data dir",
    )
