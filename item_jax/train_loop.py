"""The trainer: `train_and_evaluate(config, workdir)`, read top to bottom.

Config checks, mesh, data, model and optimizer, sharded state, the compiled step,
checkpoints, evaluation hooks and the loop. Running it again on the same workdir resumes
from the latest complete checkpoint, at the same data position (the data position is the
step: batch `k` of the stream order fixed by the seed and `config.data.num_streams`).
SIGTERM (a maintenance event) saves the current step, waits for the write, and stops; in a
multi-process run every process stops at the same step. The command line is
`item_jax/cli/train.py`; docs/launch.md describes preemption and resume.
"""

import copy
import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from item_jax import allocator, checkpoint, config_check, profiling, sharding, train_step
from item_jax.data import dataset_info, input_pipeline, readable_records, shard_integrity
from item_jax.distributed import preemption_sync_enabled
from item_jax.errors import ItemJaxError
from item_jax.interop import pretrained_init
from item_jax.metrics_logger import MetricsLogger
from item_jax.model import AUTO_TITLE_POOLING, model_from_config


class NonFiniteLossError(ItemJaxError, FloatingPointError):
    """A step produced a non-finite loss or gradient norm."""


class _PreemptionFlag:
    """Set by SIGTERM; the loop saves and stops at the next step boundary.

    A single process catches SIGTERM itself. A multi-process run uses JAX's preemption
    service instead: it catches SIGTERM on any host and picks one step at which every process
    stops (`reached_preemption_sync_point`), so they all save the same step.
    """

    def __init__(self):
        self.requested = False
        self._synced = False
        self._previous_handler = None

    def install(self) -> None:
        if jax.process_count() > 1 and preemption_sync_enabled():
            self._synced = True
            return

        def handler(signum, frame):  # pylint: disable=unused-argument
            logging.warning("SIGTERM received: saving a checkpoint and stopping.")
            self.requested = True

        try:
            self._previous_handler = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # Not the main thread (e.g. called from a test worker thread).
            pass

    def uninstall(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def reached(self, step: int) -> bool:
        """Whether to save `step` and stop; multi-process runs must ask at every step."""
        if self._synced and multihost_utils.reached_preemption_sync_point(step):
            logging.warning("Preemption notice: every process saves step %d and stops.", step)
            self.requested = True
        return self.requested


class _NonFiniteGuard:
    """Reads each step's `finite` flag: stops the run, or counts and logs the skipped step.

    `push` checks the step before (one step late, so the host never waits on the device);
    `check_pending` checks the latest step at once, before a checkpoint or a log line.
    """

    def __init__(self, stop: bool):
        self.stop = stop
        self.skipped_steps = 0
        self._pending = None

    def push(self, step: int, device_metrics: dict) -> None:
        self.check_pending()
        self._pending = (step, device_metrics)

    def check_pending(self) -> None:
        if self._pending is None:
            return
        step, device_metrics = self._pending
        self._pending = None
        if float(device_metrics["finite"]) == 1.0:
            return
        metrics = _host_metrics(device_metrics)
        bad = _nonfinite_names(metrics)
        if self.stop:
            raise NonFiniteLossError(
                f"Non-finite value at step {step} in {', '.join(bad)}: {metrics}. The last good "
                "checkpoint is kept; set config.stop_on_nonfinite=False to skip such steps."
            )
        self.skipped_steps += 1
        logging.warning(
            "Step %d skipped (non-finite %s); parameters and optimizer state are "
            "kept. %d step(s) skipped so far.",
            step,
            ", ".join(bad),
            self.skipped_steps,
        )


def _host_metrics(device_metrics: dict) -> dict[str, float]:
    return {key: float(value) for key, value in jax.device_get(device_metrics).items()}


def _nonfinite_names(metrics: dict[str, float]) -> list[str]:
    """The objectives (`*_loss`) and `grad_norm` whose value is not finite."""
    bad = [
        key
        for key, value in metrics.items()
        if (key.endswith("_loss") or key == "grad_norm") and not math.isfinite(value)
    ]
    return bad or ["loss"]


def train_and_evaluate(
    config, workdir: str, *, evaluate_fn: Callable | None = None, stop_at_step: int | None = None
) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns last metrics.

    `evaluate_fn(params, step) -> dict`, if given, runs every `config.eval_every_steps` and at
    the end; its metrics are logged with the split name "validation". `stop_at_step` stops
    the run there as a preemption would (checkpoint, then return); a rerun continues.
    """
    preemption = _PreemptionFlag()
    preemption.install()  # First, so that a SIGTERM during start-up is not fatal either.
    try:
        return _train(config, workdir, evaluate_fn, stop_at_step, preemption)
    finally:
        preemption.uninstall()


def _load_pretrained(model, config, setup, workdir: str):
    """The initial params with `config.init`'s checkpoints loaded, placed as the state's."""
    host_params = jax.tree.map(np.asarray, train_step.initial_params(model, config.seed))
    params, report = pretrained_init.apply_init(host_params, config)
    for line in pretrained_init.format_report(report):
        logging.info("%s", line)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, pretrained_init.REPORT_FILE), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return jax.tree.map(
        lambda value, shard: jax.make_array_from_callback(
            value.shape, shard, lambda index: value[index]
        ),
        params,
        setup.state_shardings["params"],
    )


@dataclasses.dataclass(frozen=True)
class InputReport:
    """What the input set-up found: the data, its readable records and the start-up lines."""

    info: dict  # The data's dataset_info.json.
    # The train split's readable records (`item_jax/data/readable_records.py`): the files,
    # and in skip mode what is left out of them.
    readable: readable_records.ReadableRecords
    # Integrity counts that every train log line repeats while any is non-zero.
    left_out: dict[str, float]
    # (absl level, text) of the start-up lines: the mesh and data, the memory allocator's
    # advice, the MLM level a model that ignores its inputs reaches.
    log_lines: tuple[tuple[int, str], ...]


def _set_up_input(config, mesh) -> InputReport:
    """Checks the data against the config and finds the train split's readable records."""
    if not config.data.dir:
        raise config_check.ConfigError(
            "config.data.dir: no data dir given (TFRecord shards from "
            "`python -m item_jax.cli.convert`)"
        )
    info = dataset_info.load_dataset_info(config.data.dir)
    config_check.check_config_against_data(config, info)
    # Stop mode checks the shard sizes, skip mode reads every shard and image once.
    readable = readable_records.of_split(config.data.dir, "train", readable_records.mode_of(config))
    left_out = {}
    if readable.num_corrupt_left_out:
        left_out["corrupt_records_left_out"] = float(readable.num_corrupt_left_out)
    if readable.num_images_left_out:
        left_out["undecodable_images_left_out"] = float(readable.num_images_left_out)

    log_lines = [
        (
            logging.INFO,
            f"Mesh {dict(mesh.shape)} over {jax.device_count()} devices "
            f"({jax.process_count()} processes); data {config.data.dir}: "
            f"{info['splits']['train']['num_examples']} train examples",
        )
    ]
    memory_allocator = allocator.loaded_allocator()
    if jax.default_backend() == "cpu" and memory_allocator == "glibc":
        log_lines.append(
            (
                logging.WARNING,
                "Memory allocator: glibc malloc; the CPU step runs slower than on tcmalloc "
                "(docs/performance.md; install Debian's libtcmalloc-minimal4; "
                "item_jax/allocator.py)",
            )
        )
    else:
        log_lines.append((logging.INFO, f"Memory allocator: {memory_allocator}"))
    unigram = info["tokenizer"].get("train_piece_unigram_entropy_nats")
    if unigram is not None:
        log_lines.append(
            (
                logging.INFO,
                "MLM/GMLM input-independent level (unigram entropy of the train pieces): "
                f"{unigram:.2f} nats; a model that reads its inputs goes well below it.",
            )
        )
    if config.same_seller_negatives:
        with_seller = info.get("num_with_seller")  # Absent from shards written before it.
        log_lines.append(
            (
                logging.INFO,
                "Negatives from each listing's own seller (same_seller_negatives): "
                + (
                    f"{with_seller} of {info['num_kept']} listings name a seller"
                    if with_seller
                    else "no listing names a seller, so all are one seller's and the step "
                    "is built without the seller mask (same_seller_negatives = False)"
                ),
            )
        )
    if config.data.seller_buckets:
        log_lines.append(
            (
                logging.INFO,
                f"Batches by seller (data.seller_buckets={config.data.seller_buckets}): "
                + (
                    "each batch of a stream is drawn from one bucket of sellers"
                    if info.get("num_with_seller")
                    else "no listing names a seller, so every batch is one seller's as it "
                    "is (data.seller_buckets = 0)"
                ),
            )
        )
    return InputReport(info, readable, left_out, tuple(log_lines))


def _restore_or_start(config, model, setup, checkpointer, info, workdir: str):
    """(state, start step, data position) from the latest checkpoint, or a fresh start: the
    initial state (with `config.init`'s checkpoints loaded) and the config written to
    `workdir/config.json`."""
    if checkpointer.latest_step() is not None:
        state, restored_position = checkpointer.restore(setup.abstract_state)
        start_step = int(jax.device_get(state["step"]))
        _check_data_position(config, restored_position, start_step)
        logging.info("Resuming from step %d", start_step)
        if pretrained_init.is_enabled(config):
            logging.info("config.init is not applied again: the run resumes from its checkpoint.")
        return state, start_step, restored_position
    pretrained_init.check_init(config, info, config.data.dir)
    state = setup.init_state(jax.random.key(config.seed))
    if pretrained_init.is_enabled(config):
        state = dict(state, params=_load_pretrained(model, config, setup, workdir))
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json_best_effort(indent=2))
    return state, 0, {}


class _Throughput:
    """Examples a second, time a step, time left and TFLOP/s per device, over the steps
    since the last `restart`."""

    def __init__(self, config):
        self._global_batch_size = config.global_batch_size
        self._total_steps = config.total_steps
        self._flops_per_example = profiling.flops_per_example(config.model)
        self.restart()

    def restart(self) -> None:
        self._start, self._steps = time.time(), 0

    def count_step(self) -> None:
        self._steps += 1

    def read(self, step: int) -> dict[str, float]:
        elapsed = time.time() - self._start
        examples_per_s = self._steps * self._global_batch_size / elapsed
        return dict(
            examples_per_s=examples_per_s,
            step_ms=1000.0 * elapsed / self._steps,
            eta_s=(self._total_steps - step) * elapsed / self._steps,
            tflops_per_device=examples_per_s * self._flops_per_example / 1e12 / jax.device_count(),
        )


def _train(
    config,
    workdir: str,
    evaluate_fn: Callable | None,
    stop_at_step: int | None,
    preemption: _PreemptionFlag,
) -> dict[str, float]:
    """The body of `train_and_evaluate`, with the SIGTERM handler in place."""
    # --- Config, mesh and data checks -------------------------------------------------
    config_check.check_config(config)
    mesh = sharding.make_mesh(config.mesh)
    config_check.check_config_against_mesh(config, mesh, jax.process_count())
    data = _set_up_input(config, mesh)
    for level, line in data.log_lines:
        logging.log(level, "%s", line)
    if not data.info.get("num_with_seller") and (
        config.same_seller_negatives or config.data.seller_buckets
    ):
        # One seller: the very program and batches (and the stored config) of the fields
        # turned off, so that a resume need not replay the stream for seller buckets.
        config = copy.deepcopy(config)
        config.same_seller_negatives = False
        config.data.seller_buckets = 0

    # --- Model, optimizer, sharded state -----------------------------------------------
    model = model_from_config(config.model)
    setup = train_step.build_train_setup(model, config, mesh)
    num_params = sum(
        int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(setup.abstract_state["params"])
    )
    logging.info(
        "Model: %.2fM parameters, sequence %d = %d text + %d patches",
        num_params / 1e6,
        model.max_text_len + model.num_patches,
        model.max_text_len,
        model.num_patches,
    )

    checkpointer = checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        save_every_steps=config.checkpoint_every_steps,
        keep=config.keep_checkpoints,
    )
    state, start_step, restored_position = _restore_or_start(
        config, model, setup, checkpointer, data.info, workdir
    )
    num_streams = input_pipeline.choose_num_streams(config, restored_position.get("num_streams"))

    # --- The compiled step ---------------------------------------------------------------
    compile_start = time.time()
    step_fn = train_step.compile_train_step(setup, config)
    logging.info(
        "Step compiled in %.1fs. Memory per device: %s; train state per device: %s",
        time.time() - compile_start,
        profiling.memory_summary(step_fn.memory_analysis()),
        profiling.state_memory_summary(setup.abstract_state),
    )

    batches = input_pipeline.make_global_iterator(
        config,
        config.data.dir,
        mesh,
        setup.batch_sharding,
        start_step=start_step,
        num_streams=num_streams,
        readable=data.readable,
    )
    logger = MetricsLogger(workdir, config.total_steps)
    if data.readable.mode == "skip":
        logger.log(start_step, data.readable.counts(), split="data", console=False)
    nonfinite = _NonFiniteGuard(stop=config.stop_on_nonfinite)
    throughput = _Throughput(config)

    def data_position(step):
        return {
            "next_batch": step,
            "global_batch_size": config.global_batch_size,
            "num_streams": num_streams,
            "process_count": jax.process_count(),
        }

    def run_evaluation(step):
        if evaluate_fn is None:
            return {}
        metrics = evaluate_fn(state["params"], step)
        logger.log(step, metrics, split="validation")
        return metrics

    # --- The loop ------------------------------------------------------------------------
    last_metrics: dict[str, float] = {}
    throughput.restart()
    step = start_step
    try:
        while step < config.total_steps:
            state, device_metrics = step_fn(
                state, _next_batch(batches, data.readable, checkpointer)
            )
            step += 1
            throughput.count_step()
            nonfinite.push(step, device_metrics)
            is_last = step == config.total_steps
            if stop_at_step is not None and step >= stop_at_step and not is_last:
                preemption.requested = True
            stopping = preemption.reached(step) and not is_last
            if step % config.log_every_steps == 0 or is_last:
                nonfinite.check_pending()
                last_metrics = {
                    **_host_metrics(device_metrics),
                    **throughput.read(step),
                    "skipped_steps": nonfinite.skipped_steps,
                    **data.left_out,
                }
                logger.log(step, last_metrics)
                throughput.restart()
            if step % config.checkpoint_every_steps == 0 or is_last or stopping:
                nonfinite.check_pending()  # Never save a state that a non-finite step produced.
                checkpointer.save(step, state, data_position(step), force=True)
            if stopping:
                checkpointer.wait()
                logging.warning(
                    "Stopped at step %d (preemption); checkpoint written, rerun to resume.", step
                )
                break
            if config.eval_every_steps and step % config.eval_every_steps == 0 and not is_last:
                run_evaluation(step)
        else:
            nonfinite.check_pending()
            _settle_title_pooling(config, workdir, run_evaluation(step))
    finally:
        batches.close()
        checkpointer.close()
        logger.close()
    last_metrics["step"] = step
    return last_metrics


def _settle_title_pooling(config, workdir: str, validation: dict) -> None:
    """Under `model.title_pooling = "auto"`, writes the pooling of the title half that found
    the product more often on the final validation (`title_pooling.*.recall@1`, from
    `protocol.make_validation_evaluator`) into `workdir/config.json`, where evaluation,
    export, `embed` and search read it. A tie keeps the mean; without those figures (no
    validation split) the config keeps "auto", which pools by the mean."""
    if config.model.title_pooling != AUTO_TITLE_POOLING:
        return
    recalls = {name: validation.get(f"title_pooling.{name}.recall@1") for name in ("mean", "cls")}
    if any(recall is None for recall in recalls.values()):
        logging.info(
            "model.title_pooling stays %r (the mean): no validation figures to choose by",
            AUTO_TITLE_POOLING,
        )
        return
    chosen = "cls" if recalls["cls"] > recalls["mean"] else "mean"
    path = os.path.join(workdir, "config.json")
    logging.info(
        "Title half: validation R@1 %.4f pooled by the mean, %.4f by the [CLS] state; "
        "the product embedding uses %r (model.title_pooling in %s)",
        recalls["mean"],
        recalls["cls"],
        chosen,
        path,
    )
    if jax.process_index() == 0:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
        stored["model"]["title_pooling"] = chosen
        with open(path, "w", encoding="utf-8") as f:
            json.dump(stored, f, indent=2)


def _next_batch(
    batches, readable: readable_records.ReadableRecords, checkpointer: checkpoint.Checkpointer
):
    """The next batch; a record that fails to read, or an image that fails to decode, stops
    the run naming the broken shard (and listing) and the checkpoint a rerun resumes from."""
    try:
        return next(batches)
    except Exception as error:  # pylint: disable=broad-except
        named = shard_integrity.named_read_error(
            error,
            readable.data_dir,
            readable.split,
            list(readable.files),
            dict(readable.limits),
            shard_integrity.resume_hint(checkpointer.latest_step()),
        )
        if named is None:
            raise
        raise named from error


def _check_data_position(config, position: dict, step: int) -> None:
    """Warns when the checkpoint's data position cannot be continued exactly."""
    if position.get("next_batch", step) != step:
        logging.warning(
            "The checkpoint's data position (batch %s) differs from its step %d; "
            "continuing from batch %d.",
            position.get("next_batch"),
            step,
            step,
        )
    if position.get("global_batch_size", config.global_batch_size) != config.global_batch_size:
        logging.warning(
            "Global batch changed since the checkpoint (%s -> %d); the data position "
            "is approximate.",
            position.get("global_batch_size"),
            config.global_batch_size,
        )
