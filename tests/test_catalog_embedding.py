"""A catalog embedded by 2 processes (Parquet parts) equals the 1-process embedding, and
parts and the serving index can be written to an object store."""

import json
import os
import subprocess
import sys

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from subprocess_utils import REPO_ROOT, child_xla_flags, free_port, wait_for

from item_jax import catalog_embedding, export
from item_jax.evaluation import ann_index


def _embed_command(export_dir, manifest_path, out_dir, *extra):
    return [
        sys.executable,
        "-m",
        "item_jax.cli.embed",
        "--export",
        export_dir,
        "--manifest",
        manifest_path,
        "--out",
        out_dir,
        "--format",
        "parquet",
        "--batch_size",
        "8",
        *extra,
    ]


@pytest.mark.slow
def test_two_processes_write_parts_whose_union_is_the_one_process_output(
    trained_workdir, catalog_shards, tmp_path
):
    export_dir = str(tmp_path / "export")
    export.export_model(trained_workdir, export_dir)
    catalog = os.path.join(os.path.dirname(catalog_shards), "catalog")
    lines = open(os.path.join(catalog, "manifest.jsonl"), encoding="utf-8").read().splitlines()
    rows = [json.loads(line) for line in lines[:21]]
    for row in rows:
        row["image"] = os.path.join(catalog, row["image"])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    rows.insert(15, dict(id="broken", title="broken photo", image=str(tmp_path / "broken.jpg")))
    manifest_path = str(tmp_path / "manifest.jsonl")
    with open(manifest_path, "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(row) for row in rows) + "\n{not json\n")

    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT, XLA_FLAGS=child_xla_flags())
    port = free_port()
    processes = [
        subprocess.Popen(
            _embed_command(export_dir, manifest_path, str(tmp_path / "one")),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    ]
    processes += [
        subprocess.Popen(
            _embed_command(
                export_dir,
                manifest_path,
                str(tmp_path / "two"),
                "--coordinator_address",
                f"127.0.0.1:{port}",
                "--num_processes",
                "2",
                "--process_id",
                str(rank),
            ),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for rank in range(2)
    ]
    codes = wait_for(processes, timeout=240)
    assert codes == [0, 0, 0], [p.stderr.read().decode()[-2000:] for p in processes]

    one, two = (
        catalog_embedding.read_parts(str(tmp_path / "one")),
        catalog_embedding.read_parts(str(tmp_path / "two")),
    )
    assert len(os.listdir(tmp_path / "two")) == 5  # 2 parts, 2 part summaries, the index.
    assert (
        one.column("id").to_pylist()
        == two.column("id").to_pylist()
        == [row["id"] for row in rows if row["id"] != "broken"]
    )
    assert one.column("group").to_pylist() == two.column("group").to_pylist()
    assert one.column("category").to_pylist() == two.column("category").to_pylist()
    vectors = [np.asarray(t.column("embedding").to_pylist(), np.float32) for t in (one, two)]
    assert vectors[0].shape == (21, 2 * 32)  # Title and photo halves of embed_dim 32.
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors[0], axis=1), 1.0, atol=1e-5)

    index = json.load(open(tmp_path / "two" / catalog_embedding.INDEX_FILE))
    assert [part["rows"] for part in index["parts"]] == [
        len(pq.read_table(tmp_path / "two" / part["part"])) for part in index["parts"]
    ]
    assert index["num_embedded"] == 21 and index["num_rejected"] == 2  # The image, the line.
    assert index["num_input_listings"] == 23
    one_index = json.load(open(tmp_path / "one" / catalog_embedding.INDEX_FILE))
    assert one_index["num_rejected"] == 2 and len(one_index["parts"]) == 1

    # The serving index built from the parts reports its recall against exact search.
    info = ann_index.build_from_parts(
        str(tmp_path / "two"), str(tmp_path / "ann"), nlist=2, nprobe=2, k=5
    )
    assert info["rows"] == 21 and info["recall@5_vs_exact"] == 1.0  # Every cell searched.
    assert json.load(open(tmp_path / "ann" / "ids.json")) == one.column("id").to_pylist()

    # Parts and the serving index on a URL filesystem (in-process ram://, standing in for gs://).
    remote = "ram://embedding-parts"
    catalog_embedding.embed_manifest_parts(
        export_dir, manifest_path, remote, batch_size=8, show_progress=False
    )
    on_the_store = catalog_embedding.read_parts(remote)
    assert on_the_store.column("id").to_pylist() == one.column("id").to_pylist()
    np.testing.assert_allclose(
        np.asarray(on_the_store.column("embedding").to_pylist(), np.float32), vectors[0], atol=1e-6
    )
    remote_info = ann_index.build_from_parts(remote, f"{remote}/ann", nlist=2, nprobe=2, k=5)
    assert remote_info["recall@5_vs_exact"] == 1.0
    with tf.io.gfile.GFile(f"{remote}/ann/index.faiss", "rb") as f:
        assert faiss.deserialize_index(np.frombuffer(f.read(), np.uint8)).ntotal == 21


@pytest.mark.slow
def test_shard_parts_read_each_process_its_files_and_embed_as_the_manifest_does(
    trained_workdir, catalog_shards, tmp_path
):
    export_dir = str(tmp_path / "export")
    export.export_model(trained_workdir, export_dir)
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    names = sorted(name for name in os.listdir(catalog_shards) if name.endswith(".tfrecord"))
    assert len(names) >= 3
    for name in names:
        (shard_dir / name).write_bytes(open(os.path.join(catalog_shards, name), "rb").read())
    corrupt = shard_dir / names[-1]  # Its second half is cut off: a truncated record.
    whole = corrupt.read_bytes()
    corrupt.write_bytes(whole[: len(whole) // 2])
    pattern = str(shard_dir / "*.tfrecord")

    one = catalog_embedding.embed_shard_parts(
        export_dir, pattern, str(tmp_path / "one"), batch_size=8, show_progress=False
    )
    parts = [
        catalog_embedding.embed_shard_parts(
            export_dir,
            pattern,
            str(tmp_path / "two"),
            process_index=rank,
            process_count=2,
            batch_size=8,
            show_progress=False,
        )
        for rank in (1, 0)
    ]
    two = parts[1]
    assert [part["files"] for part in two["parts"]] == [
        [str(shard_dir / name) for name in names[: len(names) // 2]],
        [str(shard_dir / name) for name in names[len(names) // 2 :]],
    ]
    one_rows, two_rows = (
        catalog_embedding.read_parts(str(tmp_path / out)) for out in ("one", "two")
    )
    assert one_rows.column("id").to_pylist() == two_rows.column("id").to_pylist()
    vectors = np.asarray(one_rows.column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(
        np.asarray(two_rows.column("embedding").to_pylist(), np.float32), vectors, atol=1e-6
    )

    # The truncated shard is a counted reject naming the file; its readable records are kept.
    records = {
        name: sum(1 for _ in tf.data.TFRecordDataset(os.path.join(catalog_shards, name)))
        for name in names
    }
    for index in (one, two):
        assert index["num_rejected"] == 1
        assert index["num_input_listings"] == index["num_embedded"] < sum(records.values())
        assert index["num_embedded"] > sum(records[name] for name in names[:-1])
    (reject,) = json.load(open(tmp_path / "two" / "part-00001-of-00002.json"))["rejects"]
    assert reject["shard"] == str(corrupt) and reject["reason"] == "corrupt_shard"

    # A stored image that does not decode is a counted reject; the rest of its batch is kept.
    good = next(iter(tf.data.TFRecordDataset(os.path.join(catalog_shards, names[0]))))
    bad = tf.train.Example.FromString(good.numpy())
    bad.features.feature["image"].bytes_list.value[0] = b"\xff\xd8\xff not a jpeg"
    bad.features.feature["id"].bytes_list.value[0] = b"bad-photo"
    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as writer:
        for serialized in (good.numpy(), bad.SerializeToString(), good.numpy()):
            writer.write(serialized)
    bad_index = catalog_embedding.embed_shard_parts(
        export_dir,
        str(tmp_path / "bad.tfrecord"),
        str(tmp_path / "bad"),
        batch_size=8,
        show_progress=False,
    )
    assert (bad_index["num_input_listings"], bad_index["num_embedded"]) == (3, 2)
    (reject,) = json.load(open(tmp_path / "bad" / "part-00000-of-00001.json"))["rejects"]
    assert (reject["id"], reject["record"], reject["reason"]) == (
        "bad-photo",
        1,
        "undecodable_image",
    )

    # Each row is the embedding of the listing's own photo and title, as from the manifest.
    catalog = os.path.join(os.path.dirname(catalog_shards), "catalog")
    rows = {
        row["id"]: row for row in map(json.loads, open(os.path.join(catalog, "manifest.jsonl")))
    }
    ids = one_rows.column("id").to_pylist()
    assert len(set(ids)) == len(ids) and set(ids) <= set(rows)
    model = export.load_exported(export_dir, batch_size=8)
    sample = ids[::7]
    expected = model.embed(
        [rows[i]["image"] and os.path.join(catalog, rows[i]["image"]) for i in sample],
        [rows[i]["title"] for i in sample],
    )
    np.testing.assert_allclose(vectors[::7], expected, atol=1e-5)
    assert one_rows.column("group").to_pylist()[::7] == [rows[i]["group"] for i in sample]

    # The command line: --shards with Parquet, and a clear error without it.
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT, XLA_FLAGS=child_xla_flags())
    command = [
        sys.executable,
        "-m",
        "item_jax.cli.embed",
        "--export",
        export_dir,
        "--shards",
        pattern,
        "--out",
        str(tmp_path / "cli"),
    ]
    refused = subprocess.run(
        command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "--format parquet" in refused.stderr
    done = subprocess.run(
        command + ["--format", "parquet", "--batch_size", "8"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert catalog_embedding.read_parts(str(tmp_path / "cli")).column("id").to_pylist() == ids
