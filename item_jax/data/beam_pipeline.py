"""The converter's Apache Beam pipeline: manifest lines in, shards and summaries out.

`convert.py` builds the pipeline with `build_pipeline`, runs it on the runner the options
name (DirectRunner on one machine; DataflowRunner, FlinkRunner or SparkRunner on a
cluster) and then assembles `dataset_info.json` from what the pipeline wrote to
`WORK_DIR` inside the staging directory. The stages:

  1. Manifest lines -> `manifest.Claim`s, one reader per manifest file (a glob names
     many), each line judged on its own and numbered on across the files in sorted order;
     duplicate ids are found by a group-by on the id (the first line keeps it).
  2. Split from a seeded hash of the product group (`assign_split`), the same
     whatever the runner or worker count.
  3. Images decoded, resized and re-encoded (`image_io`), spread over the workers by a
     reshuffle; bad images become rejects.
  4. Tokenizer: SentencePiece trained in one worker on at most
     `tokenizer.MAX_TRAINING_TITLES` train titles, those with the smallest seeded order
     hash (all of them in a smaller catalog, in write order), or the given WordPiece.
  5. Product groups numbered by their rank in the sorted distinct keys without any worker
     holding them all: the keys are bucketed into the ranges between `GROUP_BUCKETS`
     approximate quantiles, each range's sorted keys get its offset plus their rank, and
     the index is joined back to the listings by group key. Every kept listing
     tokenized, serialised (category indices from the sorted distinct categories, a small
     side input) and keyed by (split, shard); a split's shard count comes from its
     estimated bytes and `shard_size_mb`, and a listing's shard from its order hash, so
     shard k holds the k-th range of the split's hash order. Each shard is sorted by that
     hash and written by one worker.
  6. Rejects (sorted by line), counts and per-shard records written to `WORK_DIR`.

Everything a stage computes depends only on the listing and the seed, never on which
worker saw it, so a re-run writes the same bytes on any runner and worker count.
"""

import bisect
import collections
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantiles

from item_jax import file_io
from item_jax.data import image_io, manifest, tokenizer, wordpiece
from item_jax.data.dataset_info import SPLITS, TOKENIZER_FILE

WORK_DIR = "_pipeline"  # Inside the staging directory; removed before publishing.
SUMMARY_FILE = "summary.json"
REJECTS_PART = "rejects.jsonl"
SHARD_RECORD_SUFFIX = ".shard.json"
UNNAMED_SHARD = "{split}-bucket-{bucket:05d}.tfrecord"  # Renamed by the driver.
_EXAMPLE_OVERHEAD_BYTES = 96
# Product groups are numbered key range by key range (`number_groups`), so no worker holds
# more than one range's keys: about 10^5 keys a range at 10^8 groups.
GROUP_BUCKETS = 1024
LINE_COUNTS = "line_counts"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every stage needs to know; picklable, so it travels to the workers."""

    manifest_path: str
    staging_dir: str
    image_size: int
    max_image_pixels: int
    seed: int
    split_fractions: tuple[float, float, float]
    allow_empty_titles: bool
    vocab_size: int
    shard_size_mb: float
    wordpiece_vocab: tuple[str, ...] | None = None  # BERT order; None = train SentencePiece.
    wordpiece_lowercase: bool = True
    split_punctuation: bool = False  # SentencePiece only (tokenizer.normalization_rules).

    @property
    def work_dir(self) -> str:
        return os.path.join(self.staging_dir, WORK_DIR)


@dataclasses.dataclass(frozen=True)
class Kept:
    """A listing that made it through every check, with its stored image."""

    listing: manifest.Listing
    split: str
    order: tuple[float, str]  # (seeded hash of the id, id): the write order in a split.
    jpeg: bytes  # b"" when the listing has no photo.
    original_size: tuple[int, int] | None
    aspect_cropped: bool


# ------------------------------------------------------------------- 1-3: listings


def group_key(listing: manifest.Listing) -> str:
    """The product group a listing belongs to; one of its own when it has no `group`."""
    return f"group:{listing.group}" if listing.group else f"id:{listing.id}"


def assign_split(key: str, seed: int, split_fractions: Sequence[float]) -> str:
    """Split of a group key: a seeded hash mapped onto the cumulative fractions."""
    position = _unit_hash(f"split|{seed}|{key}")
    cumulative = 0.0
    for split, fraction in zip(SPLITS, split_fractions):
        cumulative += fraction
        if position < cumulative and fraction > 0:
            return split
    return [split for split, fraction in zip(SPLITS, split_fractions) if fraction > 0][-1]


def order_key(listing_id: str, seed: int) -> tuple[float, str]:
    """A listing's place in its split's write order: a seeded hash of its id, then the id."""
    return _unit_hash(f"order|{seed}|{listing_id}"), listing_id


def _unit_hash(text: str) -> float:
    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def serialize_example(
    listing: manifest.Listing,
    jpeg: bytes,
    title_tokens: Sequence[int],
    group_index: int,
    category_index: int,
) -> bytes:
    """One tf.train.Example in the schema of docs/design.md, serialised deterministically."""
    import tensorflow as tf  # Deferred: only writing shards needs it.

    def bytes_feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(values: Sequence[int]):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    features = {
        "id": bytes_feature(listing.id.encode("utf-8")),
        "title": bytes_feature(listing.title.encode("utf-8")),
        "title_tokens": int_feature(title_tokens),
        "image": bytes_feature(jpeg),
        "category": bytes_feature(listing.category.encode("utf-8")),
        "category_index": int_feature([category_index]),
        "group": bytes_feature(listing.group.encode("utf-8")),
        "group_index": int_feature([group_index]),
        "seller": bytes_feature(listing.seller.encode("utf-8")),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)


def read_manifest_file(index_and_path, allow_empty_titles: bool):
    """(file index, claim) for every line of one manifest file, numbered in the file, and its
    line count as the `LINE_COUNTS` output."""
    index, path = index_and_path
    text = manifest.read_text(path)
    yield beam.pvalue.TaggedOutput(LINE_COUNTS, (index, manifest.count_lines(text)))
    for claim in manifest.claims_of_text(text, path, allow_empty_titles):
        yield index, claim


def offsets(counts: dict) -> dict:
    """Key -> the sum of the counts of the keys before it (manifest lines before a file,
    product groups before a key range)."""
    before, total = {}, 0
    for key in sorted(counts):
        before[key], total = total, total + counts[key]
    return before


def resolve_duplicates(id_and_claims):
    """Listings and rejects: the first line with an id keeps its outcome; later ones are
    duplicate_id. (Unannotated: Beam would type-check the union against each consumer.)"""
    _, claims = id_and_claims
    claims = sorted(claims, key=lambda claim: claim.line_number)
    yield claims[0].outcome
    for claim in claims[1:]:
        yield manifest.duplicate_reject(claim, claims[0].line_number)


def store_image(listing: manifest.Listing, settings: Settings):
    """A `Kept` listing, or the `manifest.Reject` of its image."""
    split = assign_split(group_key(listing), settings.seed, settings.split_fractions)
    order = order_key(listing.id, settings.seed)
    if not listing.image_path:
        return Kept(listing, split, order, b"", None, False)
    outcome = image_io.image_outcome(
        (listing.image_path, settings.image_size, settings.max_image_pixels)
    )
    if isinstance(outcome, tuple):
        reason, detail = outcome
        return manifest.Reject(listing.line_number, listing.id, reason, detail)
    return Kept(
        listing,
        split,
        order,
        outcome.jpeg,
        (outcome.original_width, outcome.original_height),
        outcome.aspect_cropped,
    )


# ------------------------------------------------------------------- 4: tokenizer


def train_sentencepiece(ordered_titles: list, settings: Settings) -> bytes:
    """The model, trained on the sampled titles in write order; b"" when there are none
    (the driver then stops with a ConversionError)."""
    titles = [title for _, title in sorted(ordered_titles)]
    if not titles:
        return b""
    path = tokenizer.train_tokenizer(
        titles,
        os.path.join(settings.staging_dir, TOKENIZER_FILE),
        settings.vocab_size,
        settings.seed,
        split_punctuation=settings.split_punctuation,
    )
    return file_io.read_bytes(path)


class _Processors:
    """One tokenizer per worker process, built from the side input on first use."""

    _cache: dict[Any, Any] = {}

    @classmethod
    def get(cls, model: bytes, settings: Settings):
        key = (hash(model), settings.wordpiece_vocab is None)
        if key not in cls._cache:
            if settings.wordpiece_vocab is not None:
                cls._cache[key] = wordpiece.WordPieceTokenizer(
                    settings.wordpiece_vocab, settings.wordpiece_lowercase
                )
            elif model:
                import sentencepiece  # pylint: disable=g-import-not-at-top

                cls._cache[key] = sentencepiece.SentencePieceProcessor(model_proto=model)
            else:
                cls._cache[key] = None
        return cls._cache[key]


def tokenize(item: Kept, model: bytes, settings: Settings) -> tuple[Kept, list[int]]:
    processor = _Processors.get(model, settings)
    if processor is None or not item.listing.title:
        return item, []
    return item, tokenizer.encode_titles(processor, [item.listing.title])[0]


# ------------------------------------------------------------------- 5: shards


def estimated_bytes(item: Kept, tokens: list[int]) -> int:
    listing = item.listing
    text_bytes = sum(
        len(value.encode("utf-8"))
        for value in (listing.id, listing.title, listing.category, listing.group, listing.seller)
    )
    return len(item.jpeg) + text_bytes + 2 * len(tokens) + _EXAMPLE_OVERHEAD_BYTES


def num_shards(total_bytes: int, num_examples: int, shard_size_mb: float) -> int:
    if num_examples == 0:
        return 0
    wanted = math.ceil(total_bytes / (shard_size_mb * 2**20))
    return int(min(max(1, wanted), num_examples))


def group_bucket(key: str, quantiles: list) -> int:
    """Which key range numbers a group key: buckets are the ranges between approximate
    quantiles of the distinct keys, so bucket b's keys all sort before bucket b+1's."""
    return bisect.bisect_right(quantiles[1:-1], key)


def number_groups(bucket_and_keys, bucket_offsets: dict):
    """(group key, group index) for every key of one bucket: the bucket's offset (the sizes of
    the buckets before it) plus the key's rank in the bucket's sorted keys, which is the
    key's rank among all keys whatever the quantiles were."""
    bucket, keys = bucket_and_keys
    for rank, key in enumerate(sorted(keys)):
        yield key, bucket_offsets[bucket] + rank


def with_group_index(key_and_joined):
    """(Kept, tokens, group index) for every listing of one product group."""
    _, joined = key_and_joined
    (group_index,) = joined["index"]
    for item, tokens in joined["listings"]:
        yield item, tokens, group_index


def keyed_example(item_tokens_group, shard_counts: dict, categories: list):
    """((split, bucket), (order, serialised example)) of one kept listing."""
    item, tokens, group_index = item_tokens_group
    count = shard_counts[item.split]
    bucket = min(count - 1, int(item.order[0] * count))
    category_index = _index_of(categories, item.listing.category) if item.listing.category else -1
    example = serialize_example(item.listing, item.jpeg, tokens, group_index, category_index)
    return (item.split, bucket), (item.order, example)


def _index_of(sorted_keys: list, key: str) -> int:
    index = bisect.bisect_left(sorted_keys, key)
    assert sorted_keys[index] == key, key
    return index


def write_shard(bucket_and_examples, settings: Settings) -> dict[str, Any]:
    """Writes one shard in hash order; returns its record (split, bucket, count, file)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only writers need it)

    (split, bucket), examples = bucket_and_examples
    examples = sorted(examples, key=lambda pair: pair[0])
    name = UNNAMED_SHARD.format(split=split, bucket=bucket)
    file_io.makedirs(settings.work_dir)
    with tf.io.TFRecordWriter(os.path.join(settings.work_dir, name)) as writer:
        for _, example in examples:
            writer.write(example)
    record = {"split": split, "bucket": bucket, "file": name, "records": len(examples)}
    with file_io.open_file(
        os.path.join(settings.work_dir, name + SHARD_RECORD_SUFFIX), "w"
    ) as record_file:
        json.dump(record, record_file)
    return record


# ------------------------------------------------------------------- 6: summaries


class CountsFn(beam.CombineFn):
    """Counters over the kept listings: everything dataset_info.json counts."""

    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, counts, item_tokens):
        item, tokens = item_tokens
        counts["kept"] += 1
        counts[f"split:{item.split}"] += 1
        counts["without_title"] += not item.listing.title
        counts["with_seller"] += bool(item.listing.seller)
        counts["aspect_cropped"] += item.aspect_cropped
        for cleaning in item.listing.cleanings:
            counts[f"cleaned:{cleaning}"] += 1
        if item.original_size:
            counts["with_image"] += 1
            counts[f"width:{item.original_size[0]}"] += 1
            counts[f"height:{item.original_size[1]}"] += 1
        if item.split == "train":
            for piece in tokens:
                counts[f"piece:{piece}"] += 1
        return counts

    def merge_accumulators(self, accumulators):
        merged = collections.Counter()
        for counts in accumulators:
            merged.update(counts)
        return merged

    def extract_output(self, counts):
        return dict(counts)


def write_summary(
    counts, num_input, split_groups, group_bucket_sizes, categories, settings: Settings
) -> None:
    file_io.makedirs(settings.work_dir)
    summary = {
        "num_input": num_input,
        "counts": counts,
        "num_groups": sum(group_bucket_sizes.values()),
        "split_groups": dict(split_groups),
        "categories": categories,
    }
    with file_io.open_file(os.path.join(settings.work_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f)


def write_rejects(rejects: list, settings: Settings) -> None:
    file_io.makedirs(settings.work_dir)
    rejects = sorted(rejects, key=lambda reject: (reject.line_number, reject.reason))
    with file_io.open_file(os.path.join(settings.work_dir, REJECTS_PART), "w") as f:
        for reject in rejects:
            f.write(json.dumps(reject.to_json_dict()) + "\n")


# ------------------------------------------------------------------- the pipeline


def build_pipeline(
    pipeline: beam.Pipeline, settings: Settings, files: Sequence[str] | None = None
) -> None:
    """Adds every stage to `pipeline`; running it fills `settings.work_dir`. `files`: the
    manifest's files (default: `settings.manifest_path` expanded, when it is a glob)."""
    if files is None:
        files = manifest.manifest_files(settings.manifest_path)
    read = (
        pipeline
        | "ManifestFiles" >> beam.Create(list(enumerate(files)))
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadFiles"
        >> beam.FlatMap(read_manifest_file, settings.allow_empty_titles).with_outputs(
            LINE_COUNTS, main="claims"
        )
    )
    lines_before = (
        read[LINE_COUNTS]
        | "LineCounts" >> beam.combiners.ToDict()
        | "LinesBefore" >> beam.Map(offsets)
    )
    claims = read.claims | "NumberLines" >> beam.Map(
        lambda indexed, before: manifest.shift_claim(indexed[1], before[indexed[0]]),
        beam.pvalue.AsSingleton(lines_before),
    )
    num_input = claims | "CountInput" >> beam.combiners.Count.Globally()
    unclaimed = (
        claims
        | "Unclaimed" >> beam.Filter(lambda claim: claim.id is None)
        | "UnclaimedOutcome" >> beam.Map(lambda claim: claim.outcome)
    )
    resolved = (
        claims
        | "Claimed" >> beam.Filter(lambda claim: claim.id is not None)
        | "ById" >> beam.Map(lambda claim: (claim.id, claim))
        | "GroupById" >> beam.GroupByKey()
        | "ResolveDuplicates" >> beam.FlatMap(resolve_duplicates)
    )
    outcomes = (resolved, unclaimed) | "AllOutcomes" >> beam.Flatten()
    stored = (
        outcomes
        | "Listings" >> beam.Filter(lambda outcome: isinstance(outcome, manifest.Listing))
        | "SpreadImages" >> beam.Reshuffle()
        | "StoreImages" >> beam.Map(store_image, settings)
    )
    rejects = (
        outcomes
        | "ManifestRejects" >> beam.Filter(lambda outcome: isinstance(outcome, manifest.Reject)),
        stored
        | "ImageRejects" >> beam.Filter(lambda outcome: isinstance(outcome, manifest.Reject)),
    ) | "AllRejects" >> beam.Flatten()
    kept = stored | "Kept" >> beam.Filter(lambda outcome: isinstance(outcome, Kept))

    if settings.wordpiece_vocab is None:
        model = (
            kept
            | "TrainTitles"
            >> beam.Filter(lambda item: item.split == "train" and bool(item.listing.title))
            | "OrderedTitles" >> beam.Map(lambda item: (item.order, item.listing.title))
            | "SampleTitles" >> beam.combiners.Top.Smallest(tokenizer.MAX_TRAINING_TITLES)
            | "TrainTokenizer" >> beam.Map(train_sentencepiece, settings)
        )
    else:
        model = pipeline | "WordPiece" >> beam.Create([b""])
    tokenized = kept | "Tokenize" >> beam.Map(tokenize, beam.pvalue.AsSingleton(model), settings)

    shard_counts = (
        tokenized
        | "SizeBySplit" >> beam.Map(lambda pair: (pair[0].split, (estimated_bytes(*pair), 1)))
        | "SumSizes"
        >> beam.CombinePerKey(lambda values: tuple(map(sum, zip(*values))) if values else (0, 0))
        | "ShardCount"
        >> beam.Map(lambda kv: (kv[0], num_shards(kv[1][0], kv[1][1], settings.shard_size_mb)))
    )
    # Group indices: each key's rank in the sorted distinct keys, computed range by range
    # between approximate quantiles, each range sorted by one worker.
    distinct_groups = (
        kept | "GroupKeys" >> beam.Map(_group_key) | "DistinctGroups" >> beam.Distinct()
    )
    quantiles = distinct_groups | "GroupQuantiles" >> ApproximateQuantiles.Globally(
        GROUP_BUCKETS + 1
    )
    group_buckets = (
        distinct_groups
        | "BucketGroups"
        >> beam.Map(
            lambda key, bounds: (group_bucket(key, bounds), key), beam.pvalue.AsSingleton(quantiles)
        )
        | "GroupsByBucket" >> beam.GroupByKey()
        | "ListBucket" >> beam.MapTuple(lambda bucket, keys: (bucket, list(keys)))
    )
    group_bucket_sizes = group_buckets | "BucketSize" >> beam.MapTuple(
        lambda bucket, keys: (bucket, len(keys))
    )
    bucket_offsets = (
        group_bucket_sizes
        | "BucketSizes" >> beam.combiners.ToDict()
        | "BucketOffsets" >> beam.Map(offsets)
    )
    group_indices = group_buckets | "NumberGroups" >> beam.FlatMap(
        number_groups, beam.pvalue.AsSingleton(bucket_offsets)
    )
    indexed = (
        {
            "index": group_indices,
            "listings": tokenized | "ByGroup" >> beam.Map(lambda pair: (_group_key(pair[0]), pair)),
        }
        | "JoinGroupIndex" >> beam.CoGroupByKey()
        | "WithGroupIndex" >> beam.FlatMap(with_group_index)
    )
    categories = (
        kept
        | "Categories"
        >> beam.FlatMap(lambda item: [item.listing.category] if item.listing.category else [])
        | "DistinctCategories" >> beam.Distinct()
        | "CategoryList" >> beam.combiners.ToList()
        | "SortCategories" >> beam.Map(sorted)
    )
    _ = (
        indexed
        | "KeyByShard"
        >> beam.Map(
            keyed_example, beam.pvalue.AsDict(shard_counts), beam.pvalue.AsSingleton(categories)
        )
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(write_shard, settings)
    )

    split_groups = (
        kept
        | "SplitGroup" >> beam.Map(lambda item: (item.split, _group_key(item)))
        | "DistinctSplitGroups" >> beam.Distinct()
        | "CountSplitGroups" >> beam.combiners.Count.PerKey()
    )
    counts = tokenized | "Counts" >> beam.CombineGlobally(CountsFn())
    _ = counts | "WriteSummary" >> beam.Map(
        write_summary,
        beam.pvalue.AsSingleton(num_input),
        beam.pvalue.AsList(split_groups),
        beam.pvalue.AsDict(group_bucket_sizes),
        beam.pvalue.AsSingleton(categories),
        settings,
    )
    _ = (
        rejects
        | "RejectList" >> beam.combiners.ToList()
        | "WriteRejects" >> beam.Map(write_rejects, settings)
    )


def _group_key(item: Kept) -> str:
    return group_key(item.listing)


def read_results(settings: Settings) -> dict[str, Any]:
    """What the pipeline wrote: the summary, the rejects and the shard records."""
    work_dir = settings.work_dir
    with file_io.open_file(os.path.join(work_dir, SUMMARY_FILE)) as f:
        summary = json.load(f)
    with file_io.open_file(os.path.join(work_dir, REJECTS_PART)) as f:
        rejects = [
            manifest.Reject(row["line"], row["id"], row["reason"], row["detail"])
            for row in map(json.loads, f)
        ]
    shards = {split: [] for split in SPLITS}
    for name in file_io.listdir(work_dir):
        if name.endswith(SHARD_RECORD_SUFFIX):
            with file_io.open_file(os.path.join(work_dir, name)) as f:
                record = json.load(f)
            shards[record["split"]].append(record)
    for records in shards.values():
        records.sort(key=lambda record: record["bucket"])
    return dict(summary=summary, rejects=rejects, shards=shards)
