"""The peer's side of `bench vs-peer`: one pretraining step of Hugging Face ViLT in PyTorch.

  <peer python> item_jax/benchmarks/peer_vilt.py [--hidden 256] [--layers 4] [--heads 4] \
      [--mlp 1024] [--image 64] [--patch 8] [--text 32] [--vocab 8000] [--batch 32] \
      [--steps 10] [--threads N]

ViLT is what a user would pick instead of item_jax: a single-stream image-text transformer
over title pieces and image patches. The step is forward, backward and AdamW of `ViltModel`
with ITEm-like heads on its output states: MLM on the title positions, MIM pixel regression
on the patch positions and ITM on the first (CLS) position, on the CPU. The defaults are the
tiny config's dims; `vs_peer.peer_arguments` passes those of the config being compared.

It runs in the peer's own Python (torch, transformers) and imports nothing from item_jax, so
that the peer is measured as its users run it. Two untimed steps come first (allocation and
PyTorch's first-call work), then `--steps` timed ones. The last line printed is one JSON
object: `peer`, `torch` (its version), `seq_len` (the encoder's sequence length), `params`,
`batch`, `step_s` (mean seconds a step) and `examples_per_s`, the figure `vs_peer.py` reads.
"""

import argparse
import json
import time

import torch
from torch import nn
from transformers import ViltConfig, ViltModel

PEER_NAME = "hf-vilt-torch"
WARMUP_STEPS = 2
FIRST_RANDOM_PIECE = 5  # Title pieces are drawn above the special tokens' ids.


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256, help="Model width.")
    parser.add_argument("--layers", type=int, default=4, help="Encoder blocks.")
    parser.add_argument("--heads", type=int, default=4, help="Attention heads.")
    parser.add_argument("--mlp", type=int, default=1024, help="MLP width.")
    parser.add_argument("--image", type=int, default=64, help="Image side, in pixels.")
    parser.add_argument("--patch", type=int, default=8, help="Patch side, in pixels.")
    parser.add_argument("--text", type=int, default=32, help="Title slots.")
    parser.add_argument("--vocab", type=int, default=8000, help="Vocabulary size.")
    parser.add_argument("--batch", type=int, default=32, help="Examples a step.")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its own).")
    return parser.parse_args(argv)


def build_step(args: argparse.Namespace):
    """(step, parameter count): `step()` runs one training step and returns the sequence
    length the encoder saw."""
    torch.manual_seed(0)
    config = ViltConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.mlp,
        image_size=args.image,
        patch_size=args.patch,
        max_position_embeddings=args.text,
        vocab_size=args.vocab,
        # Every patch of one image, as item_jax encodes them (no patch sampling).
        max_image_length=-1,
        num_images=-1,
        modality_type_vocab_size=2,
    )
    encoder = ViltModel(config, add_pooling_layer=False)
    num_patches = (args.image // args.patch) ** 2
    patch_pixels = 3 * args.patch * args.patch
    heads = nn.ModuleDict(
        dict(
            mlm=nn.Linear(args.hidden, args.vocab),
            mim=nn.Linear(args.hidden, patch_pixels),
            itm=nn.Linear(args.hidden, 2),
        )
    )
    parameters = list(encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)

    batch = args.batch
    input_ids = torch.randint(FIRST_RANDOM_PIECE, args.vocab, (batch, args.text))
    attention_mask = torch.ones(batch, args.text, dtype=torch.long)
    pixel_values = torch.randn(batch, 3, args.image, args.image)
    pixel_mask = torch.ones(batch, args.image, args.image, dtype=torch.long)
    mlm_labels = torch.randint(FIRST_RANDOM_PIECE, args.vocab, (batch, args.text))
    itm_labels = torch.randint(0, 2, (batch,))

    def step() -> int:
        states = encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            pixel_mask=pixel_mask,
        ).last_hidden_state
        # ViLT's sequence: the title slots, then the image's CLS, then its patches.
        title = states[:, : args.text]
        patches = states[:, args.text + 1 : args.text + 1 + num_patches]
        loss = nn.functional.cross_entropy(
            heads["mlm"](title).reshape(-1, args.vocab), mlm_labels.reshape(-1)
        )
        loss = loss + heads["mim"](patches).pow(2).mean()
        loss = loss + nn.functional.cross_entropy(heads["itm"](states[:, 0]), itm_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return states.shape[1]

    return step, sum(parameter.numel() for parameter in parameters)


def main(argv=None) -> dict:
    args = parse_arguments(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    step, num_params = build_step(args)
    for _ in range(WARMUP_STEPS):
        seq_len = step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - start) / args.steps
    result = dict(
        peer=PEER_NAME,
        torch=torch.__version__,
        seq_len=seq_len,
        params=num_params,
        batch=args.batch,
        step_s=step_s,
        examples_per_s=args.batch / step_s,
    )
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
