"""Tests for the catalog converter: rejects, splits, shards, determinism, CLI."""

import collections
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from subprocess_utils import run_cli

from item_jax.data import beam_pipeline, convert, dataset_info, image_io, manifest, tokenizer

IMAGE_SIZE = 16
MAX_PIXELS = 2000  # Small, so a 60x60 image stands in for an absurdly large one.
CONVERT_ARGS = dict(
    image_size=IMAGE_SIZE,
    vocab_size=300,
    seed=5,
    shard_size_mb=128,
    max_image_pixels=MAX_PIXELS,
    show_progress=False,
)
WORDS = [
    "red",
    "blue",
    "cotton",
    "shirt",
    "steel",
    "mug",
    "leather",
    "wallet",
    "lamp",
    "desk",
    "wooden",
    "chair",
    "glass",
    "vase",
    "wool",
    "scarf",
]

FEATURE_SPEC = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "title": tf.io.FixedLenFeature([], tf.string),
    "title_tokens": tf.io.VarLenFeature(tf.int64),
    "image": tf.io.FixedLenFeature([], tf.string),
    "category": tf.io.FixedLenFeature([], tf.string),
    "category_index": tf.io.FixedLenFeature([], tf.int64),
    "group": tf.io.FixedLenFeature([], tf.string),
    "group_index": tf.io.FixedLenFeature([], tf.int64),
}


class CatalogBuilder:
    """Writes a manifest line by line and remembers what each line should become."""

    def __init__(self, directory):
        self.directory = directory
        self.lines: list[bytes] = []
        self.kept_ids: list[str] = []
        self.expected_rejects: dict[int, str] = {}  # Line number -> reason.

    def image(self, name, pixels=None, mode=None, **save_args):
        if pixels is None:
            rng = np.random.default_rng(len(self.lines))
            pixels = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(self.directory / name, **save_args)
        return name

    def raw_file(self, name, data):
        (self.directory / name).write_bytes(data)
        return name

    def add(self, record, reject_reason=None, kept_id=None):
        """Appends a line: a dict as JSON, or raw bytes (then pass `kept_id` if it is kept)."""
        line = record if isinstance(record, bytes) else json.dumps(record).encode("utf-8")
        self.lines.append(line)
        if reject_reason:
            self.expected_rejects[len(self.lines)] = reject_reason
        else:
            self.kept_ids.append(kept_id or record["id"])

    def write(self, name="manifest.jsonl"):
        path = self.directory / name
        path.write_bytes(b"\n".join(self.lines) + b"\n")
        return str(path)


def _title(index):
    return " ".join(WORDS[(index * 3 + offset) % len(WORDS)] for offset in range(3))


def _listing(index, image, **fields):
    record = {
        "id": f"item-{index}",
        "title": _title(index),
        "image": image,
        "category": ["home/kitchen/mugs", "fashion/scarves", ""][index % 3],
        "group": f"product-{index // 2}" if index % 5 else "",
    }
    record.update(fields)
    return record


def _truncated_jpeg_bytes():
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(noise).save(encoded, "JPEG")
    return encoded.getvalue()[: len(encoded.getvalue()) // 2]


def build_messy_catalog(directory):
    """Tens of listings: plain good ones, every supported image kind, every bad kind."""
    catalog = CatalogBuilder(directory)
    for index in range(24):
        catalog.add(_listing(index, catalog.image(f"good{index}.jpg")))
    exif = Image.Exif()
    exif[0x0112] = 6
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[:, :6] = (255, 0, 0, 255)
    palette = Image.new("P", (12, 12), 1)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(directory / "palette.png", transparency=1)
    Image.new("CMYK", (12, 12), (0, 255, 255, 0)).save(directory / "cmyk.jpg")
    Image.new("RGB", (12, 12), (0, 0, 255)).save(
        directory / "anim.gif", save_all=True, append_images=[Image.new("RGB", (12, 12))]
    )
    supported_kinds = {
        "palette": "palette.png",
        "rgba": catalog.image("rgba.png", rgba, mode="RGBA"),
        "gray16": catalog.image("gray16.png", np.full((12, 12), 40000, np.uint16)),
        "gray": catalog.image("gray.png", np.full((12, 12), 90, np.uint8), mode="L"),
        "cmyk": "cmyk.jpg",
        "exif": catalog.image("exif.jpg", exif=exif),
        "gif": "anim.gif",
        "webp": catalog.image("image.webp", format="WEBP"),
    }
    for offset, (kind, image) in enumerate(supported_kinds.items()):
        catalog.add(_listing(100 + offset, image, id=f"kind-{kind}"))
    catalog.add(_listing(200, "", id="no-image"))
    catalog.add(
        _listing(201, catalog.image("ctrl.jpg"), id="control-chars", title="mug\x07 with\ttab\x00")
    )
    catalog.add(
        b'{"id": "bad-bytes", "title": "caf\xe9 mug", "image": "", "group": "g-b"}',
        kept_id="bad-bytes",
    )

    catalog.add(_listing(300, "missing.jpg"), image_io.MISSING_IMAGE)
    catalog.add(
        _listing(301, catalog.raw_file("truncated.jpg", _truncated_jpeg_bytes())),
        image_io.CORRUPT_IMAGE,
    )
    catalog.add(
        _listing(302, catalog.raw_file("noise.jpg", np.random.default_rng(5).bytes(300))),
        image_io.CORRUPT_IMAGE,
    )
    catalog.add(_listing(303, catalog.raw_file("empty.png", b"")), image_io.ZERO_SIZE_IMAGE)
    catalog.add(
        _listing(304, catalog.image("huge.jpg", np.zeros((60, 60, 3), np.uint8))),
        image_io.IMAGE_TOO_LARGE,
    )
    catalog.add(_listing(305, catalog.image("e1.jpg"), title=""), manifest.EMPTY_TITLE)
    catalog.add(_listing(306, catalog.image("e2.jpg"), title=" \t "), manifest.EMPTY_TITLE)
    catalog.add(_listing(307, "", title=""), manifest.EMPTY_LISTING)
    catalog.add(_listing(0, catalog.image("dup.jpg")), manifest.DUPLICATE_ID)
    catalog.add(_listing(0, ""), manifest.DUPLICATE_ID)  # A third line with that id.
    # The first line with this id was rejected (empty title); it still claimed the id.
    catalog.add(_listing(305, catalog.image("e3.jpg")), manifest.DUPLICATE_ID)
    catalog.add(b'{"id": "broken", "title": "unterminated', manifest.MALFORMED_LINE)
    catalog.add(b'["a", "list"]', manifest.MALFORMED_LINE)
    catalog.add(_listing(308, "", id=""), manifest.MISSING_ID)
    catalog.add(_listing(309, "", title=["not", "a", "string"]), manifest.INVALID_FIELD)
    return catalog


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    catalog = build_messy_catalog(directory)
    manifest_path = catalog.write()
    out_dir = str(directory / "shards")
    info = convert.convert_catalog(manifest_path, out_dir, num_workers=2, **CONVERT_ARGS)
    return catalog, manifest_path, out_dir, info


def read_examples(out_dir, split):
    examples = []
    for path in dataset_info.split_file_paths(out_dir, split):
        for record in tf.data.TFRecordDataset(path):
            parsed = tf.io.parse_single_example(record, FEATURE_SPEC)
            parsed["title_tokens"] = tf.sparse.to_dense(parsed["title_tokens"])
            examples.append({key: value.numpy() for key, value in parsed.items()})
    return examples


def read_all_examples(out_dir):
    return {split: read_examples(out_dir, split) for split in dataset_info.SPLITS}


@pytest.mark.slow
def test_good_listings_kept_and_each_bad_one_rejected_with_its_reason(converted):
    catalog, _, out_dir, info = converted

    with open(os.path.join(out_dir, dataset_info.REJECTS_FILE)) as rejects_file:
        rejects = [json.loads(line) for line in rejects_file]
    kept_ids = [
        example["id"].decode()
        for examples in read_all_examples(out_dir).values()
        for example in examples
    ]

    assert {reject["line"]: reject["reason"] for reject in rejects} == catalog.expected_rejects
    assert all(reject["detail"] for reject in rejects)
    assert sorted(kept_ids) == sorted(catalog.kept_ids)
    assert info["num_kept"] == len(kept_ids)
    assert info["num_input_listings"] == len(catalog.lines)
    assert info["num_kept"] + sum(info["rejected_by_reason"].values()) == len(catalog.lines)
    assert info["rejected_by_reason"] == {
        reason: list(catalog.expected_rejects.values()).count(reason)
        for reason in convert.REJECT_REASONS
    }
    assert info["cleaned"][manifest.CLEANED_CONTROL_CHARACTERS] == 1
    assert info["cleaned"][manifest.CLEANED_INVALID_UTF8] == 1


def test_text_is_cleaned_not_rejected(converted):
    _, _, out_dir, _ = converted
    titles = {
        example["id"].decode(): example["title"].decode()
        for examples in read_all_examples(out_dir).values()
        for example in examples
    }
    assert titles["control-chars"] == "mug with tab"
    assert titles["bad-bytes"] == "café mug"


def test_product_groups_never_span_two_splits(converted):
    _, _, out_dir, info = converted
    splits_of_group = collections.defaultdict(set)
    for split, examples in read_all_examples(out_dir).items():
        for example in examples:
            splits_of_group[example["group_index"]].add(split)
    assert all(info["splits"][split]["num_examples"] > 0 for split in dataset_info.SPLITS)
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    assert len(splits_of_group) == info["num_groups"]
    assert sorted(splits_of_group) == list(range(info["num_groups"]))
    # The index is the group key's rank among the sorted distinct keys (a listing without a
    # group is a group of its own).
    index_of_key = {}
    for examples in read_all_examples(out_dir).values():
        for example in examples:
            key = (
                f"group:{example['group'].decode()}"
                if example["group"]
                else f"id:{example['id'].decode()}"
            )
            assert index_of_key.setdefault(key, example["group_index"]) == example["group_index"]
    assert [index_of_key[key] for key in sorted(index_of_key)] == list(range(info["num_groups"]))
    assert (
        sum(info["splits"][split]["num_examples"] for split in dataset_info.SPLITS)
        == info["num_kept"]
    )


def test_parsed_example_follows_the_schema_and_tokens_decode(converted):
    _, _, out_dir, info = converted
    processor = tokenizer.load_tokenizer(os.path.join(out_dir, info["tokenizer"]["file"]))
    examples = [example for examples in read_all_examples(out_dir).values() for example in examples]

    for example in examples:
        title = example["title"].decode()
        assert processor.decode(example["title_tokens"].tolist()) == title
        assert tokenizer.CLS_ID not in example["title_tokens"]
        category = example["category"].decode()
        expected_index = info["categories"].index(category) if category else -1
        assert example["category_index"] == expected_index
        if example["id"] in (b"no-image", b"bad-bytes"):
            assert example["image"] == b""
        else:
            image = Image.open(io.BytesIO(example["image"]))
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) == IMAGE_SIZE
    groupless = [example for example in examples if not example["group"]]
    assert len({example["group_index"] for example in groupless}) == len(groupless)
    assert info["categories"] == ["fashion/scarves", "home/kitchen/mugs"]
    assert info["tokenizer"]["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert info["image_size"] == IMAGE_SIZE
    assert info["original_image_size"]["width"]["max"] == 14


def test_rerun_is_byte_identical(converted, tmp_path):
    _, manifest_path, out_dir, info = converted
    again = str(tmp_path / "again")

    info_again = convert.convert_catalog(manifest_path, again, num_workers=1, **CONVERT_ARGS)

    names = sorted(os.listdir(out_dir))
    assert names == sorted(os.listdir(again))
    for name in names:
        with (
            open(os.path.join(out_dir, name), "rb") as first,
            open(os.path.join(again, name), "rb") as second,
        ):
            assert first.read() == second.read(), name
    assert info_again["fingerprint"] == info["fingerprint"]


def test_rerun_into_the_same_directory_replaces_it(tmp_path):
    catalog = CatalogBuilder(tmp_path)
    for index in range(12):
        catalog.add(_listing(index, catalog.image(f"i{index}.jpg")))
    manifest_path = catalog.write()
    out_dir = str(tmp_path / "out")
    first = convert.convert_catalog(manifest_path, out_dir, num_workers=1, **CONVERT_ARGS)

    second = convert.convert_catalog(manifest_path, out_dir, num_workers=1, **CONVERT_ARGS)

    assert second == first
    assert not [name for name in os.listdir(tmp_path) if "staging" in name or "previous" in name]


def test_mostly_bad_catalog_stops_without_writing_shards(tmp_path):
    catalog = CatalogBuilder(tmp_path)
    for index in range(3):
        catalog.add(_listing(index, catalog.image(f"i{index}.jpg")))
    for index in range(3, 8):
        catalog.add(_listing(index, f"missing{index}.jpg"), image_io.MISSING_IMAGE)
    manifest_path = catalog.write()
    out_dir = tmp_path / "out"

    with pytest.raises(convert.ConversionError, match=r"5 of 8 listings .* missing_image: 5"):
        convert.convert_catalog(manifest_path, str(out_dir), num_workers=1, **CONVERT_ARGS)
    assert not out_dir.exists()
    assert not [name for name in os.listdir(tmp_path) if "staging" in name]

    info = convert.convert_catalog(
        manifest_path, str(out_dir), num_workers=1, max_reject_fraction=0.7, **CONVERT_ARGS
    )
    assert info["num_kept"] == 3


def test_split_punctuation_reaches_the_shards_tokens_and_is_recorded(tmp_path):
    catalog = CatalogBuilder(tmp_path)
    for index in range(12):
        catalog.add(_listing(index, catalog.image(f"i{index}.jpg"), title=f"mug ({_title(index)})"))
    manifest_path = catalog.write()

    info = convert.convert_catalog(
        manifest_path, str(tmp_path / "out"), num_workers=1, split_punctuation=True, **CONVERT_ARGS
    )

    assert info["converter_args"]["split_punctuation"] is True
    processor = tokenizer.load_tokenizer(str(tmp_path / "out" / "tokenizer.model"))
    for examples in read_all_examples(str(tmp_path / "out")).values():
        for example in examples:
            pieces = [processor.id_to_piece(int(i)) for i in example["title_tokens"]]
            assert pieces[1] == "▁(" and pieces[2].startswith("▁"), pieces  # Not glued.
    with pytest.raises(ValueError, match="WordPiece"):
        convert.convert_catalog(
            manifest_path,
            str(tmp_path / "wordpiece"),
            split_punctuation=True,
            wordpiece_vocab=str(tmp_path / "vocab.txt"),
            **CONVERT_ARGS,
        )


def test_empty_titles_are_kept_with_the_flag(tmp_path):
    catalog = CatalogBuilder(tmp_path)
    for index in range(10):
        catalog.add(_listing(index, catalog.image(f"i{index}.jpg")))
    catalog.add(_listing(10, catalog.image("only-image.jpg"), title=""))
    catalog.add(_listing(11, "", title=""), manifest.EMPTY_LISTING)
    manifest_path = catalog.write()

    info = convert.convert_catalog(
        manifest_path, str(tmp_path / "out"), num_workers=1, allow_empty_titles=True, **CONVERT_ARGS
    )

    assert info["num_kept"] == 11
    assert info["num_without_title"] == 1
    examples = [
        example
        for examples in read_all_examples(str(tmp_path / "out")).values()
        for example in examples
    ]
    image_only = [example for example in examples if example["id"] == b"item-10"]
    assert image_only[0]["title"] == b"" and image_only[0]["title_tokens"].size == 0


def test_csv_manifest_with_invalid_utf8_and_bad_rows(tmp_path):
    rows = [b"id,title,image,category,group"]
    for index in range(10):
        Image.new("RGB", (10, 12), (index * 20, 0, 0)).save(tmp_path / f"c{index}.png")
        rows.append(f"c{index},{_title(index)},c{index}.png,home/lamps,".encode())
    rows.append(b'latin,"caf\xe9 lamp, ""large""",,home/lamps,')
    rows.append(b"short,row")
    (tmp_path / "catalog.csv").write_bytes(b"\r\n".join(rows) + b"\r\n")

    info = convert.convert_catalog(
        str(tmp_path / "catalog.csv"), str(tmp_path / "out"), num_workers=1, **CONVERT_ARGS
    )

    assert info["num_kept"] == 11
    assert info["cleaned"][manifest.CLEANED_INVALID_UTF8] == 1
    assert info["rejected_by_reason"][manifest.MALFORMED_LINE] == 1
    with open(tmp_path / "out" / dataset_info.REJECTS_FILE) as rejects_file:
        assert json.loads(rejects_file.readline())["line"] == 13
    titles = {
        example["id"]: example["title"].decode()
        for examples in read_all_examples(str(tmp_path / "out")).values()
        for example in examples
    }
    assert titles[b"latin"] == 'café lamp, "large"'


def test_shards_roll_at_the_target_size(tmp_path):
    catalog = CatalogBuilder(tmp_path)
    for index in range(30):
        catalog.add(_listing(index, catalog.image(f"i{index}.jpg")))
    manifest_path = catalog.write()
    args = dict(CONVERT_ARGS, shard_size_mb=2000 / 2**20, split_fractions=(1.0, 0.0, 0.0))

    info = convert.convert_catalog(manifest_path, str(tmp_path / "out"), num_workers=1, **args)

    files = info["splits"]["train"]["files"]
    assert len(files) > 3
    assert files == [f"train-{k:05d}-of-{len(files):05d}.tfrecord" for k in range(len(files))]
    assert info["splits"]["validation"] == {
        "num_examples": 0,
        "num_groups": 0,
        "files": [],
        "shards": [],
    }
    counts = [
        sum(1 for _ in tf.data.TFRecordDataset(str(tmp_path / "out" / name))) for name in files
    ]
    assert sum(counts) == 30 and min(counts) >= 1
    assert [shard["records"] for shard in info["splits"]["train"]["shards"]] == counts


def test_split_assignment_is_seeded_and_follows_the_fractions():
    keys = [f"group:{index}" for index in range(4000)]
    splits = [beam_pipeline.assign_split(key, 0, (0.8, 0.1, 0.1)) for key in keys]
    counts = collections.Counter(splits)

    assert splits == [beam_pipeline.assign_split(key, 0, (0.8, 0.1, 0.1)) for key in keys]
    assert splits != [beam_pipeline.assign_split(key, 1, (0.8, 0.1, 0.1)) for key in keys]
    assert abs(counts["train"] / len(keys) - 0.8) < 0.03
    assert abs(counts["test"] / len(keys) - 0.1) < 0.03


def test_output_directory_with_other_files_is_refused(converted, tmp_path):
    _, manifest_path, _, _ = converted
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(convert.ConversionError, match="notes.txt"):
        convert.convert_catalog(manifest_path, str(tmp_path), num_workers=1, **CONVERT_ARGS)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_bad_arguments_and_missing_inputs_raise_clear_errors(converted, tmp_path):
    _, manifest_path, _, _ = converted
    with pytest.raises(ValueError, match="split_fractions"):
        convert.convert_catalog(manifest_path, str(tmp_path / "o"), split_fractions=(0.5, 0.1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.convert_catalog(str(tmp_path / "absent.jsonl"), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="python -m item_jax.cli.convert"):
        dataset_info.load_dataset_info(str(tmp_path))


@pytest.mark.slow
def test_cli_converts_and_prints_the_summary(converted, tmp_path):
    _, manifest_path, out_dir, info = converted

    completed = run_cli(
        "convert",
        [
            "--manifest",
            manifest_path,
            "--out",
            str(tmp_path / "cli"),
            "--image_size",
            str(IMAGE_SIZE),
            "--vocab_size",
            "300",
            "--seed",
            "5",
            "--num_workers",
            "1",
            "--max_image_pixels",
            str(MAX_PIXELS),
            "--noprogress",
        ],
    )

    printed = completed.stdout
    assert completed.returncode == 0, completed.stderr
    assert f"Kept {info['num_kept']} of {info['num_input_listings']}" in printed
    assert "missing_image 1" in printed and "control_characters 1" in printed
    assert (
        dataset_info.load_dataset_info(str(tmp_path / "cli"))["fingerprint"] == info["fingerprint"]
    )
    missing = run_cli(
        "convert",
        ["--manifest", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x"), "--noprogress"],
    )
    assert missing.returncode == 1 and "error:" in missing.stderr and "nope.jsonl" in missing.stderr


def test_dry_run_shows_the_cluster_command_line_and_checks_its_options(converted, tmp_path):
    _, manifest_path, _, _ = converted
    args = [
        "--manifest",
        manifest_path,
        "--out",
        str(tmp_path / "out"),
        "--runner",
        "DataflowRunner",
        "--dry_run",
    ]

    beam_args = (
        "--beam_args=--project=my-project --region=us-central1 --temp_location=gs://my-bucket/t"
    )
    planned = run_cli("convert", args + [beam_args])
    assert planned.returncode == 0, planned.stderr
    assert (
        "Beam options: --runner=DataflowRunner --project=my-project "
        "--temp_location=gs://my-bucket/t --region=us-central1"
    ) in planned.stdout
    assert "SpreadFiles -> ReadFiles -> LineCounts -> LinesBefore -> NumberLines" in planned.stdout
    assert "GroupById -> ResolveDuplicates" in planned.stdout
    assert "BucketGroups -> GroupsByBucket" in planned.stdout
    assert "GroupByShard -> WriteShards" in planned.stdout
    assert not (tmp_path / "out").exists()
    # Object-store paths and a manifest glob plan without touching the store.
    on_the_store = run_cli(
        "convert",
        [
            "--manifest",
            "gs://my-bucket/catalog/manifest-*.jsonl",
            "--out",
            "gs://my-bucket/shards",
            "--runner",
            "DataflowRunner",
            "--dry_run",
            beam_args,
        ],
    )
    assert on_the_store.returncode == 0, on_the_store.stderr
    assert "ReadFiles -> LineCounts" in on_the_store.stdout
    # Beam's own validation of the runner's options, as a clear error.
    invalid = run_cli("convert", args + ["--beam_args=--project=my-project"])
    assert invalid.returncode == 1 and "error:" in invalid.stderr
    assert "temp_location" in invalid.stderr


def test_convert_benchmark_reports_each_worker_count_and_equal_outputs(converted):
    from item_jax.benchmarks import convert_throughput  # pylint: disable=g-import-not-at-top

    _, manifest_path, _, info = converted
    result = convert_throughput.benchmark_convert(
        manifest_path, image_size=IMAGE_SIZE, worker_counts=(1,)
    )
    assert result["num_input_listings"] == info["num_input_listings"]
    assert 0 < result["num_kept"] < result["num_input_listings"]  # Its rejects too.
    assert result["by_workers"]["1"]["listings_per_s"] > 0
    assert result["same_output_for_every_count"]


def _copy_tree(source, destination, skip):
    for root, directories, files in os.walk(source):
        directories[:] = [name for name in directories if os.path.join(root, name) not in skip]
        for name in files:
            target = os.path.join(destination, os.path.relpath(os.path.join(root, name), source))
            tf.io.gfile.makedirs(os.path.dirname(target))
            tf.io.gfile.copy(os.path.join(root, name), target, overwrite=True)


def test_object_store_paths_convert_to_the_same_shards_and_rejects(converted):
    """Manifest, images and output on a URL filesystem (TensorFlow's in-process ram://,
    standing in for gs://) give the bytes the local conversion gave."""
    _, manifest_path, out_dir, info = converted
    local_dir = os.path.dirname(manifest_path)
    remote_dir = "ram://catalog-object-store"
    _copy_tree(local_dir, remote_dir, skip={out_dir})
    remote_manifest = f"{remote_dir}/{os.path.basename(manifest_path)}"
    remote_out = f"{remote_dir}/shards"

    for _ in range(2):  # The second run replaces the first's output file by file.
        remote_info = convert.convert_catalog(
            remote_manifest, remote_out, num_workers=1, **CONVERT_ARGS
        )

    assert sorted(tf.io.gfile.listdir(remote_out)) == sorted(os.listdir(out_dir))
    for name in os.listdir(out_dir):
        with open(os.path.join(out_dir, name), "rb") as local_file:
            expected = local_file.read()
        if name in (dataset_info.REJECTS_FILE, dataset_info.DATASET_INFO_FILE):
            expected = expected.replace(local_dir.encode(), remote_dir.encode())
        with tf.io.gfile.GFile(f"{remote_out}/{name}", "rb") as remote_file:
            assert remote_file.read() == expected, name
    assert remote_info["fingerprint"] == info["fingerprint"]
    assert not [name for name in tf.io.gfile.listdir(remote_dir) if "staging" in name]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.convert_catalog(
            f"{remote_dir}/missing.jsonl", remote_out, num_workers=1, **CONVERT_ARGS
        )


def test_manifest_split_into_files_converts_as_the_whole(converted, tmp_path):
    """A glob of manifest files is one manifest: lines numbered on across the files, so the
    shards, rejects (line numbers and duplicates across files) and counts are the same."""
    _, manifest_path, out_dir, info = converted
    with open(manifest_path, "rb") as f:
        lines = f.read().split(b"\n")
    directory = os.path.dirname(manifest_path)
    cuts = [0, 5, len(lines) - 6, len(lines)]
    for part, (start, stop) in enumerate(zip(cuts, cuts[1:])):
        with open(os.path.join(directory, f"part-{part}.jsonl"), "wb") as f:
            f.write(b"\n".join(lines[start:stop]) + (b"\n" if stop < len(lines) else b""))
    parts_out = str(tmp_path / "parts")

    parts_info = convert.convert_catalog(
        os.path.join(directory, "part-*.jsonl"), parts_out, num_workers=1, **CONVERT_ARGS
    )

    for name in os.listdir(out_dir):
        if name == dataset_info.DATASET_INFO_FILE:
            continue
        with (
            open(os.path.join(out_dir, name), "rb") as whole,
            open(os.path.join(parts_out, name), "rb") as parts,
        ):
            assert parts.read() == whole.read(), name
    assert parts_info["fingerprint"] == info["fingerprint"]
    assert parts_info["rejected_by_reason"] == info["rejected_by_reason"]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        convert.convert_catalog(
            os.path.join(directory, "nothing-*.jsonl"),
            str(tmp_path / "x"),
            num_workers=1,
            **CONVERT_ARGS,
        )


def test_an_empty_split_is_a_logged_warning(caplog):
    # absl logs through the standard library's "absl" logger, so caplog sees it.
    info = {"splits": {split: {"num_examples": 0} for split in convert.SPLITS}}
    with caplog.at_level("WARNING"):
        convert._warn_about_empty_splits(info, [0.8, 0.1, 0.0])
    warned = [record for record in caplog.records if "is empty although" in record.getMessage()]
    assert [record.levelname for record in warned] == ["WARNING", "WARNING"]
