"""Training metrics out: console lines, a JSONL log and TensorBoard summaries (process 0).

`MetricsLogger.log(step, metrics, split="train")` takes host floats; the split ("train",
"validation", "data") names the record in the JSONL, the TensorBoard tag and the console
line. The console line shows the total and per-objective losses, throughput, progress and
the time left.
"""

import json
import os
import time

import jax
from absl import logging

from item_jax.objectives import CONSOLE_METRICS

# Order of the console line (the objectives' metrics from their table); other metrics go
# to the JSONL and TensorBoard only.
CONSOLE_KEYS = (
    ("loss",)
    + CONSOLE_METRICS
    + (
        "grad_norm",
        "learning_rate",
        "retrieval.recall@1",
        "retrieval.recall@10",
        "retrieval.map@r",
        "retrieval_no_title.recall@1",
        "retrieval_no_image.recall@1",
        "linear_probe_no_title.top1_accuracy",
        "itm.accuracy",
        # Under `model.title_pooling = "auto"`: R@1 with each pooling of the title half, the
        # figures the end of training chooses by (the headline R@1 above is the mean's).
        "title_pooling.mean.recall@1",
        "title_pooling.cls.recall@1",
    )
)


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
    )


class MetricsLogger:
    """Writes `workdir/metrics.jsonl` and `workdir/tensorboard/` from process 0."""

    def __init__(self, workdir: str, total_steps: int):
        self.total_steps = total_steps
        self.active = jax.process_index() == 0
        self._jsonl = None
        self._summary_writer = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
            import tensorflow as tf  # pylint: disable=g-import-not-at-top

            self._summary_writer = tf.summary.create_file_writer(
                os.path.join(workdir, "tensorboard")
            )
        self._start_time = time.time()

    def log(
        self,
        step: int,
        metrics: dict[str, float],
        *,
        split: str = "train",
        console: bool = True,
    ) -> None:
        if not self.active:
            return
        record = {"step": step, "split": split, "time": round(time.time(), 3), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        import tensorflow as tf  # pylint: disable=g-import-not-at-top

        with self._summary_writer.as_default(step=step):
            for key, value in metrics.items():
                tf.summary.scalar(f"{split}/{key}", value)
        self._summary_writer.flush()
        if console:
            logging.info("%s", self.console_line(step, metrics, split))

    def console_line(self, step: int, metrics: dict[str, float], split: str = "train") -> str:
        parts = [
            f"[{split}] step {step}/{self.total_steps} ({100.0 * step / self.total_steps:.0f}%)"
        ]
        parts += [f"{key}={metrics[key]:.4g}" for key in CONSOLE_KEYS if key in metrics]
        if "examples_per_s" in metrics:
            parts.append(f"{metrics['examples_per_s']:.1f} ex/s")
        if "step_ms" in metrics:
            parts.append(f"{metrics['step_ms']:.0f} ms/step")
        if "eta_s" in metrics:
            parts.append(f"eta {_format_duration(metrics['eta_s'])}")
        return " ".join(parts)

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._summary_writer:
            self._summary_writer.close()
