"""Training shards: content-keyed plans, a build that round-trips every image and skips bad
objects, histograms, the sequence that reads one image at a time (locally, pickled, on S3), and
preparing many shards in threads or as Ray tasks, where shards found are never rebuilt."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import operator
import os
import pickle
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pydicom
import pytest

from harmonize.dicom.decode import decode_dicom
from harmonize.errors import ConfigError, HarmonizeError, StorageError
from harmonize.imaging.preprocess import from_uint16, training_image
from harmonize.io.storage import Storage, join
from harmonize.metrics.histogram import HIST_BINS, intensity_histogram
from harmonize.training.data import dicom_training_image
from harmonize.training.sharded_images import ShardedImages
from harmonize.training.shards import (
    build_shard,
    plan_shards,
    prepare_shards,
    read_shard_index,
)
from harmonize.training.validate import site_histogram

from conftest import SOURCE, TARGET

SETTINGS = {"load_size": 48}


def encode_npz(key: str, image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), image=image)
    return buffer.getvalue()


def decode_npz(data: bytes) -> tuple[str, np.ndarray]:
    """The tests' ``Decode``: (key, image) of what ``encode_npz`` wrote, a HarmonizeError else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return str(npz["key"]), npz["image"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise HarmonizeError("it is not an .npz image") from err


def images_of(seed: int, n: int) -> list[np.ndarray]:
    """``n`` uint16 images of different shapes."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 65536, (20 + i, 30 - i), dtype=np.uint16) for i in range(n)]


def write_archive(
    folder: str, images: list[np.ndarray], storage: Storage, prefix: str = "img"
) -> list[tuple[str, str]]:
    """Each image as ``folder/{prefix}-{i}.npz`` with key ``k{i}``; their sorted (uri, etag)."""
    for i, image in enumerate(images):
        storage.write(join(folder, f"{prefix}-{i}.npz"), encode_npz(f"k{i}", image))
    return [(o.uri, o.etag) for o in storage.list(folder)]


def assert_same_images(ours: ShardedImages, theirs: list[np.ndarray]) -> None:
    assert len(ours) == len(theirs)
    assert ours.shapes == [im.shape for im in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == np.uint16 and np.array_equal(a, b)


# -- plans -----------------------------------------------------------------------------------------
def test_plan_cuts_sorted_objects_into_content_keyed_chunks() -> None:
    objects = [(f"s3://a/{c}.dcm", f"e{c}") for c in "gfedcba"]
    specs = plan_shards(objects, "source", SETTINGS, "s3://cache/run", shard_size=3)
    assert [len(s.objects) for s in specs] == [3, 3, 1]
    assert [o for s in specs for o in s.objects] == sorted(objects)
    for index, spec in enumerate(specs):
        text = json.dumps({"settings": SETTINGS, "objects": spec.objects}, sort_keys=True)
        assert spec.key == hashlib.sha256(text.encode()).hexdigest()[:16]
        assert (spec.name, spec.index) == ("source", index)
        assert spec.uri == f"s3://cache/run/source-{index:05d}-{spec.key}.arrow"
    assert plan_shards(objects[::-1], "source", SETTINGS, "s3://cache/run/", 3) == specs

    changed = [(u, "new" if u.endswith("/d.dcm") else e) for u, e in objects]  # in shard 1
    again = plan_shards(changed, "source", SETTINGS, "s3://cache/run", 3)
    assert [a.uri == b.uri for a, b in zip(again, specs, strict=True)] == [True, False, True]

    appended = plan_shards(
        [*objects, ("s3://a/h.dcm", "eh")], "source", SETTINGS, "s3://cache/run", 3
    )
    assert [a.uri == b.uri for a, b in zip(appended, specs, strict=True)] == [True, True, False]
    assert len(appended[2].objects) == 2

    other = plan_shards(objects, "source", {"load_size": 64}, "s3://cache/run", 3)
    assert not {s.uri for s in other} & {s.uri for s in specs}
    assert plan_shards([], "source", SETTINGS, "s3://cache/run") == []
    with pytest.raises(ConfigError, match="shard_size must be at least 1, got 0"):
        plan_shards(objects, "source", SETTINGS, "s3://cache/run", shard_size=0)


# -- building --------------------------------------------------------------------------------------
def test_build_round_trips_images_and_skips_bad_objects(tmp_path: Path) -> None:
    storage = Storage()
    images = images_of(0, 4)
    objects = write_archive(str(tmp_path / "in"), images, storage)
    bad = {
        "junk.npz": b"not an npz",
        "float.npz": encode_npz("f", np.zeros((4, 4), np.float32)),
        "cube.npz": encode_npz("c", np.zeros((2, 4, 4), np.uint16)),
    }
    for name, data in bad.items():
        storage.write(str(tmp_path / "in" / name), data)
    objects += [(str(tmp_path / "in" / name), "x") for name in bad]
    objects.append((str(tmp_path / "in" / "gone.npz"), "x"))  # listed, then deleted
    (spec,) = plan_shards(objects, "images", SETTINGS, str(tmp_path / "shards"))

    summary = build_shard(spec, decode_npz, storage, SETTINGS, workers=2)
    assert (summary.uri, summary.n_images, summary.cached) == (spec.uri, 4, False)
    reasons = dict(summary.errors)
    assert sorted(reasons) == sorted(str(tmp_path / "in" / n) for n in [*bad, "gone.npz"])
    assert reasons[str(tmp_path / "in" / "junk.npz")] == "it is not an .npz image"
    assert (
        "float32 array of shape (4, 4), not 2-D uint16"
        in reasons[str(tmp_path / "in" / "float.npz")]
    )
    assert "uint16 array of shape (2, 4, 4)" in reasons[str(tmp_path / "in" / "cube.npz")]
    assert "gone.npz" in reasons[str(tmp_path / "in" / "gone.npz")]

    shard = ShardedImages([spec.uri], storage)
    assert_same_images(shard, images)
    assert shard.keys == ["k0", "k1", "k2", "k3"]
    assert shard.uris == [uri for uri, _ in objects[:4]]
    assert shard.errors == list(summary.errors) and shard.histogram() is None
    index = read_shard_index(spec.uri, storage)
    assert (index["format"], index["shard_key"], index["settings"]) == (1, spec.key, SETTINGS)
    assert index["images"][1] == [objects[1][0], objects[1][1], "k1", 21, 29]

    path = Path(spec.uri)
    before = (path.stat().st_mtime_ns, path.read_bytes())
    again = build_shard(spec, decode_npz, storage, SETTINGS)
    assert again == dataclasses.replace(summary, cached=True)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    with pytest.raises(ConfigError, match="planned with other settings"):
        build_shard(spec, decode_npz, storage, {"load_size": 64})


def test_the_histogram_is_the_sum_of_the_images_intensity_histograms(tmp_path: Path) -> None:
    storage = Storage()
    images = [np.minimum(im, 300) for im in images_of(1, 5)]  # many repeated levels
    objects = write_archive(str(tmp_path / "in"), images, storage)
    specs = plan_shards(objects, "target", SETTINGS, str(tmp_path / "shards"), shard_size=3)
    plain = build_shard(specs[0], decode_npz, storage, SETTINGS)
    assert plain.histogram is None
    summaries = [build_shard(s, decode_npz, storage, SETTINGS, histogram=True) for s in specs]
    assert not summaries[0].cached  # it had no histogram: rebuilt with one
    per_image = [intensity_histogram(from_uint16(im), bins=HIST_BINS) for im in images]
    total = sum(s.histogram for s in summaries if s.histogram is not None)
    np.testing.assert_allclose(total, np.sum(per_image, axis=0), rtol=1e-12)
    mean = ShardedImages([s.uri for s in summaries], storage).histogram()
    np.testing.assert_allclose(mean, site_histogram(images), rtol=1e-12)  # what training uses
    cached = build_shard(specs[1], decode_npz, storage, SETTINGS, histogram=True)
    assert cached.cached and cached.histogram is not None
    assert np.array_equal(cached.histogram, summaries[1].histogram)


# -- reading ---------------------------------------------------------------------------------------
def test_sharded_images_is_a_sequence_that_pickles_without_its_data(tmp_path: Path) -> None:
    storage = Storage()
    images = images_of(2, 5)
    specs = plan_shards(
        write_archive(str(tmp_path / "in"), images, storage), "images", {}, str(tmp_path / "s"), 2
    )
    for spec in specs:
        build_shard(spec, decode_npz, storage, {})
    seq = ShardedImages([s.uri for s in specs], storage)
    assert len(seq) == 5 and repr(seq) == "ShardedImages(5 images in 3 shards)"
    assert np.array_equal(seq[-1], images[4]) and np.array_equal(seq[np.int64(2)], images[2])
    assert not seq[0].flags.writeable  # a view of the batch read: copy it to change it
    for index in (5, -6):
        with pytest.raises(IndexError, match="out of range for 5 images"):
            seq[index]
    for part, expected in ((seq[1:4], images[1:4]), (seq[::-2], images[::-2]), (seq[7:], [])):
        assert isinstance(part, list) and len(part) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(part, expected, strict=True))
    assert seq[3] is seq[3]  # buffered

    blob = pickle.dumps(seq)
    assert len(blob) < images[0].nbytes  # no pixels, open files or buffer travel
    assert_same_images(pickle.loads(blob), images)

    unbuffered = ShardedImages([s.uri for s in specs], storage, buffer_bytes=0)
    assert unbuffered[3] is not unbuffered[3]
    assert_same_images(unbuffered, images)
    one_image = ShardedImages([s.uri for s in specs], storage, buffer_bytes=images[1].nbytes)
    first = one_image[0]
    assert one_image[0] is first
    one_image[1]  # evicts image 0 (their sum exceeds the buffer)
    assert one_image[0] is not first and np.array_equal(one_image[0], first)
    with pytest.raises(ConfigError, match="buffer_bytes"):
        ShardedImages([], storage, buffer_bytes=-1)
    assert len(ShardedImages([], storage)) == 0


def test_a_file_that_is_no_shard_is_a_storage_error(tmp_path: Path) -> None:
    storage = Storage()
    (tmp_path / "junk.arrow").write_bytes(b"junk" * 100)
    plain = tmp_path / "plain.arrow"
    table = pa.table({"x": [1, 2]})
    with ipc.new_file(str(plain), table.schema) as writer:
        writer.write_table(table)
    cases = {
        "junk.arrow": "it is not an Arrow IPC file",
        "plain.arrow": "it has no harmonize index",
    }
    for name, why in cases.items():
        uri = str(tmp_path / name)
        with pytest.raises(StorageError, match=f'"{uri}" is not a harmonize training shard: {why}'):
            read_shard_index(uri, storage)
        with pytest.raises(StorageError, match=why):
            ShardedImages([uri], storage)
    with pytest.raises(StorageError, match="missing.arrow"):
        read_shard_index(str(tmp_path / "missing.arrow"), storage)


def test_shards_on_s3_are_built_and_read_back(s3_server) -> None:
    storage = Storage(endpoint_url=s3_server.endpoint_url)
    bucket = s3_server.create_bucket("shards-test")
    images = images_of(3, 5)
    objects = write_archive(join(bucket, "archive"), images, storage)
    assert all(uri.startswith("s3://shards-test/archive/") for uri, _ in objects)
    specs = plan_shards(objects, "target", SETTINGS, join(bucket, "cache"), shard_size=2)
    summaries = prepare_shards(
        specs, decode_npz, storage, SETTINGS, histogram_groups={"target"}, progress=False
    )
    assert [s.uri for s in summaries] == [s.uri for s in specs] and not any(
        s.cached for s in summaries
    )
    assert all(storage.exists(s.uri) for s in specs)
    seq = ShardedImages([s.uri for s in summaries], storage)
    assert seq[-1] is seq[-1]
    assert_same_images(pickle.loads(pickle.dumps(seq)), images)
    # A batch's draws are read together (in parallel), repeats and all, with or without a buffer.
    for buffer_bytes in (0, 2**20):
        drawn = ShardedImages([s.uri for s in summaries], storage, buffer_bytes).fetch([4, 0, 4, 2])
        assert all(np.array_equal(a, images[i]) for a, i in zip(drawn, [4, 0, 4, 2], strict=True))
    with pytest.raises(IndexError, match="out of range for 5 images"):
        seq.fetch([1, 5])
    assert seq.keys == [f"k{i}" for i in range(5)]
    np.testing.assert_allclose(seq.histogram(), site_histogram(images), rtol=1e-12)


# -- preparing many --------------------------------------------------------------------------------
def _two_groups(
    tmp_path: Path, storage: Storage
) -> tuple[list, list[np.ndarray], list[np.ndarray]]:
    source, target = images_of(4, 5), images_of(5, 3)
    specs = []
    for name, images in (("source", source), ("target", target)):
        objects = write_archive(str(tmp_path / name), images, storage)
        specs += plan_shards(objects, name, SETTINGS, str(tmp_path / "cache"), shard_size=2)
    return specs, source, target


def test_prepare_builds_missing_shards_in_threads_and_finds_the_rest(tmp_path: Path) -> None:
    storage = Storage()
    specs, source, target = _two_groups(tmp_path, storage)
    prepare = partial(
        prepare_shards,
        decode=decode_npz,
        storage=storage,
        settings=SETTINGS,
        histogram_groups={"target"},
        progress=False,
    )
    summaries = prepare(specs)
    assert [s.uri for s in summaries] == [s.uri for s in specs]
    assert [s.n_images for s in summaries] == [2, 2, 1, 2, 1]
    assert not any(s.cached or s.errors for s in summaries)
    assert [s.histogram is not None for s in summaries] == [False] * 3 + [True] * 2
    assert_same_images(ShardedImages([s.uri for s in summaries[:3]], storage), source)
    assert_same_images(ShardedImages([s.uri for s in summaries[3:]], storage), target)

    again = prepare(specs)
    assert again == [dataclasses.replace(s, cached=True) for s in summaries]
    storage.write(str(tmp_path / "source" / "img-3.npz"), encode_npz("k3", source[0]))
    changed = [(o.uri, o.etag) for o in storage.list(str(tmp_path / "source"))]
    replanned = plan_shards(changed, "source", SETTINGS, str(tmp_path / "cache"), 2) + specs[3:]
    third = prepare(replanned)
    assert [s.cached for s in third] == [True, False, True, True, True]
    assert np.array_equal(ShardedImages([third[1].uri], storage)[1], source[0])


def test_prepare_decodes_dicom_in_threads(tiny_archive: Path, tmp_path: Path) -> None:
    storage = Storage()
    objects = [(o.uri, o.etag) for o in storage.list(str(tiny_archive / SOURCE), (".dcm",))]
    specs = plan_shards(objects, "source", SETTINGS, str(tmp_path), 3)
    decode = partial(dicom_training_image, load_size=48)
    summaries = prepare_shards(specs, decode, storage, SETTINGS, progress=False)
    assert sum(s.n_images for s in summaries) == 4
    errors = [uri for s in summaries for uri, _ in s.errors]
    assert errors == [str(tiny_archive / SOURCE / "broken.dcm")]
    seq = ShardedImages([s.uri for s in summaries], storage)
    for uri, key, image in zip(seq.uris, seq.keys, seq, strict=True):
        data = Path(uri).read_bytes()
        assert key == pydicom.dcmread(uri).SOPInstanceUID
        assert np.array_equal(image, training_image(decode_dicom(data).pixels, 48))


@pytest.mark.slow
def test_prepare_as_ray_tasks_equals_threads(
    ray_session, tiny_archive: Path, tmp_path: Path
) -> None:
    from harmonize.distributed.shards import ray_tasks

    storage = Storage()
    decode = partial(dicom_training_image, load_size=48)
    results = {}
    for how in ("threads", "ray"):
        specs = []
        for name in (SOURCE, TARGET):
            objects = [(o.uri, o.etag) for o in storage.list(str(tiny_archive / name), (".dcm",))]
            specs += plan_shards(objects, name, SETTINGS, str(tmp_path / how), shard_size=3)
        runner = ray_tasks if how == "ray" else None
        summaries = prepare_shards(
            specs,
            decode,
            storage,
            SETTINGS,
            histogram_groups={TARGET},
            runner=runner,
            progress=False,
        )
        results[how] = (specs, summaries)
    (specs, ray), (_, threads) = results["ray"], results["threads"]
    assert [s.uri for s in ray] == [s.uri for s in specs] and not any(s.cached for s in ray)
    assert [s.histogram is not None for s in ray] == [spec.name == TARGET for spec in specs]
    assert [uri for s in ray for uri, _ in s.errors] == [str(tiny_archive / SOURCE / "broken.dcm")]
    for ours, theirs in zip(ray, threads, strict=True):
        assert (ours.n_images, ours.errors) == (theirs.n_images, theirs.errors)
        assert (ours.histogram is None) == (theirs.histogram is None)
        assert ours.histogram is None or np.array_equal(ours.histogram, theirs.histogram)
        assert os.path.basename(ours.uri) == os.path.basename(theirs.uri)
    by_ray = ShardedImages([s.uri for s in ray], storage)
    by_threads = ShardedImages([s.uri for s in threads], storage)
    assert (
        len(by_ray) == 8 and by_ray.keys == by_threads.keys and by_ray.shapes == by_threads.shapes
    )
    assert all(np.array_equal(a, b) for a, b in zip(by_ray, by_threads, strict=True))
    # The sequence travels to a Ray worker, which reopens the shard there.
    ((_, on_a_worker),) = ray_tasks([partial(operator.getitem, by_ray, 5)])
    assert np.array_equal(on_a_worker, by_threads[5])

    again = prepare_shards(
        specs,
        decode,
        storage,
        SETTINGS,
        histogram_groups={TARGET},
        runner=ray_tasks,
        progress=False,
    )
    assert again == [dataclasses.replace(s, cached=True) for s in ray]
