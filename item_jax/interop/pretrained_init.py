"""Starting a run from pretrained BERT and ViT checkpoints: the `config.init` block.

  python -m item_jax.cli.train --config configs/tiny.py --workdir W \
      --config.data.dir SHARDS --config.init.text_from BERT_DIR --config.init.vision_from VIT_DIR \
      --config.init.encoder_from vision

`check_init` runs at start-up, before anything is compiled: it reads the checkpoints'
config.json files and fails with every mismatch at once, each naming the `config.model`
field to set (width, heads, layers, vocabulary, patch size, block layout, GELU, epsilon), and
checks that the shards were tokenized with the BERT's own vocabulary. `apply_init` loads
the tensors into the freshly initialised params (a resumed run restores its checkpoint
instead) and returns a report of which params came from where and which stayed random;
the trainer logs it and writes it to WORKDIR/init_report.json.
"""

import json
import os
import re

import flax.traverse_util
import numpy as np

from item_jax.config_check import ConfigError
from item_jax.data import dataset_info, wordpiece
from item_jax.interop import bert, hf_files, vit

REPORT_FILE = "init_report.json"
VOCAB_FILE = "vocab.txt"


def _sources(config) -> tuple[str, str, str]:
    """(text dir, vision dir, which one the blocks come from: "text", "vision" or "")."""
    text_dir, vision_dir = config.init.text_from, config.init.vision_from
    encoder_from = config.init.encoder_from
    if not text_dir and not vision_dir:
        if encoder_from:
            raise ConfigError(
                f"config.init.encoder_from: {encoder_from!r}, but neither "
                "init.text_from nor init.vision_from is set"
            )
        return "", "", ""
    if text_dir and vision_dir and not encoder_from:
        raise ConfigError(
            "config.init.encoder_from: init.text_from and init.vision_from are both "
            "set; say which one the transformer blocks come from ('text' for "
            "BERT's post-LN blocks, 'vision' for ViT's pre-LN ones)"
        )
    if not encoder_from:
        encoder_from = "text" if text_dir else "vision"
    wanted = text_dir if encoder_from == "text" else vision_dir
    if not wanted:
        raise ConfigError(
            f"config.init.encoder_from: {encoder_from!r}, but init."
            f"{'text' if encoder_from == 'text' else 'vision'}_from is not set"
        )
    return text_dir, vision_dir, encoder_from


def is_enabled(config) -> bool:
    return any(_sources(config)[:2])


def check_init(config, data_info: dict | None, data_dir: str = "") -> None:
    """Fails with every mismatch between `config` and the checkpoints it starts from."""
    text_dir, vision_dir, encoder_from = _sources(config)
    problems = []
    if text_dir:
        hf_config = _read_config(text_dir, "config.init.text_from")
        vocab = wordpiece.read_vocab_file(os.path.join(text_dir, VOCAB_FILE))
        problems += bert.config_problems(
            hf_config, config.model, text_dir, encoder_from == "text", len(vocab)
        )
        if data_info is not None:
            problems += _vocabulary_problems(vocab, data_info, data_dir, text_dir)
    if vision_dir:
        hf_config = _read_config(vision_dir, "config.init.vision_from")
        problems += vit.config_problems(
            hf_config, config.model, vision_dir, encoder_from == "vision"
        )
    if problems:
        raise ConfigError(
            "config.init: the model config does not match the checkpoints it "
            "starts from:\n  " + "\n  ".join(problems)
        )


def _read_config(directory: str, field: str) -> dict:
    if not os.path.isfile(os.path.join(directory, hf_files.CONFIG_FILE)):
        raise ConfigError(
            f"{field}: {directory!r} has no {hf_files.CONFIG_FILE}; it is not a "
            "Hugging Face checkpoint directory"
        )
    with open(os.path.join(directory, hf_files.CONFIG_FILE), encoding="utf-8") as f:
        return json.load(f)


def _vocabulary_problems(vocab, data_info, data_dir, text_dir) -> list[str]:
    if dataset_info.tokenizer_kind(data_info) != "wordpiece":
        return [
            f"config.data.dir: {data_dir} was tokenized with "
            f"{dataset_info.tokenizer_kind(data_info)}, not with {text_dir}'s WordPiece "
            "vocabulary; convert it with `python -m item_jax.cli.convert ... "
            f"--wordpiece_vocab {os.path.join(text_dir, VOCAB_FILE)}`"
        ]
    stored = wordpiece.load_wordpiece(
        os.path.join(data_dir, dataset_info.tokenizer_file(data_info))
    )
    if stored.vocab != list(vocab):
        return [
            f"config.data.dir: {data_dir} was tokenized with a different WordPiece "
            f"vocabulary than {os.path.join(text_dir, VOCAB_FILE)}"
        ]
    return []


def apply_init(params: dict, config) -> tuple[dict, dict]:
    """(params with the imported tensors in place, the report). `params`: host arrays."""
    text_dir, vision_dir, encoder_from = _sources(config)
    initial = flax.traverse_util.flatten_dict(params, sep=".")
    initial_tree = params
    updates, report = {}, {"from": {}, "left_out": {}, "notes": []}

    def record(kind, directory, imported, used, tensors):
        flat = flax.traverse_util.flatten_dict(imported, sep=".")
        for name, value in flat.items():
            if name not in initial:
                raise ValueError(
                    f"{directory}: imported parameter {name!r} has no place in this "
                    "model (a bug in item_jax/interop)"
                )
            if tuple(np.shape(value)) != tuple(initial[name].shape):
                raise ConfigError(
                    f"config.init.{kind}_from: {name} is {tuple(initial[name].shape)} "
                    f"here, {tuple(np.shape(value))} from {directory}"
                )
            updates[name] = np.asarray(value, np.float32).astype(initial[name].dtype)
        report["from"][kind] = {"dir": os.path.abspath(directory), "params": sorted(flat)}
        report["left_out"][kind] = sorted(set(tensors) - used)

    if vision_dir:
        hf_config, tensors = hf_files.read_checkpoint(vision_dir, vit.PREFIXES)
        imported, used = vit.import_vision(
            hf_config,
            tensors,
            initial_tree,
            config.model,
            with_blocks=encoder_from == "vision",
            with_class_token=not text_dir,
        )
        record("vision", vision_dir, imported, used, tensors)
        note = vit.pixel_normalization_note(vision_dir)
        if note:
            report["notes"].append(note)
        if text_dir:
            report["notes"].append("ViT's class token is left out: [CLS] comes from the BERT.")
        else:
            report["notes"].append(
                "ViT's class token fills the [CLS] row of token_embedding and "
                "row 0 of text_position (their other rows stay random); "
                "modality_type is zero, as ViT has none."
            )
    if text_dir:
        hf_config, tensors = hf_files.read_checkpoint(text_dir, bert.PREFIXES)
        vocab = wordpiece.read_vocab_file(os.path.join(text_dir, VOCAB_FILE))
        imported, used = bert.import_text(
            hf_config,
            tensors,
            initial_tree,
            config.model,
            wordpiece.item_order(vocab, text_dir),
            with_blocks=encoder_from == "text",
        )
        record("text", text_dir, imported, used, tensors)
    report["left_out_why"] = (
        "poolers (item_jax pools with embedding_projection); attention "
        "key biases (softmax ignores them); the unused side's blocks"
    )
    report["random"] = sorted(name for name in initial if name not in updates)
    merged = dict(initial)
    merged.update(updates)
    return flax.traverse_util.unflatten_dict(merged, sep="."), report


def format_report(report: dict) -> list[str]:
    """The report as log lines."""
    lines = []
    for kind, source in report["from"].items():
        lines.append(
            f"init: {len(source['params'])} params from {source['dir']} ({kind}): "
            + ", ".join(_collapse(source["params"]))
        )
    for kind, names in report["left_out"].items():
        if names:
            lines.append(f"init: left out of the {kind} checkpoint: " + ", ".join(_collapse(names)))
    lines.append(
        f"init: {len(report['random'])} params stay random: "
        + ", ".join(_collapse(report["random"]))
    )
    lines.extend(f"init: note: {note}" for note in report["notes"])
    return lines


def _collapse(names: list[str]) -> list[str]:
    """block_0.x, block_1.x, ... -> block_*.x (and encoder.layer.N likewise), in order."""
    seen, out = set(), []
    for name in names:
        short = re.sub(r"(block_|layer\.)\d+", r"\1*", name)
        if short not in seen:
            seen.add(short)
            out.append(short)
    return out
