"""The decode section of `harmonize bench device`: JPEG 2000 lossless (and HTJ2K where it can be
encoded) 16-bit images decoded by pylibjpeg-openjpeg on one CPU core against nvImageCodec on
the GPU in one batch; images/s each and the pixel-exactness of the lossless decodes.

The codestreams come from a synthetic archive (``harmonize.synth``, profile ``processed-dr``:
JPEG 2000 lossless, 16 bits allocated, 12 stored), a few distinct images repeated to the batch
size. The CPU side runs in a fresh process pinned to one core (``os.sched_setaffinity``); the
GPU side times ``Decoder.decode`` of the whole batch until the device is idle (the copy back to
the host is not timed). HTJ2K codestreams need an encoder: OpenJPEG decodes HTJ2K but cannot
encode it, so they are made by nvImageCodec on the GPU, and are unmeasured without it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harmonize.benchmarks.device import Plan, Section

TARGET_GPU_OVER_CPU = 5.0
CPU_IMAGES = 16  # images the CPU side decodes (each distinct one twice)


def _cpu_decode_seconds(frames: list[bytes]) -> float:
    """Seconds to decode ``frames`` with pylibjpeg-openjpeg, in this process pinned to one
    core (run in a fresh process: the pin must not outlive the measurement)."""
    import openjpeg

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    openjpeg.decode(frames[0])  # warm-up
    start = time.perf_counter()
    for frame in frames:
        openjpeg.decode(frame)
    return time.perf_counter() - start


def cpu_images_per_s(frames: list[bytes]) -> float:
    """pylibjpeg-openjpeg images/s on one CPU core (a fresh, pinned process)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        seconds = pool.submit(_cpu_decode_seconds, frames).result()
    return len(frames) / seconds


def _codestreams(plan: Plan, distinct: int, matrix: int) -> tuple[list[bytes], list[np.ndarray]]:
    """JPEG 2000 lossless codestreams of a synthetic archive and their pixels (OpenJPEG's
    decode of a lossless codestream is the reference)."""
    import openjpeg
    import pydicom
    from pydicom.encaps import generate_frames

    from harmonize.synth import synthesize_archive

    folder = plan.workdir / "j2k"
    synthesize_archive(
        str(folder), ["processed-dr"], distinct, seed=4, matrix=matrix, progress=False
    )
    frames, pixels = [], []
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        frames.append(bytes(frame))
        pixels.append(np.asarray(openjpeg.decode(frame)))
    return frames, pixels


def _htj2k(stored: list[np.ndarray]) -> list[bytes]:
    """HTJ2K lossless codestreams of ``stored`` (nvImageCodec's encoder, on the GPU)."""
    from nvidia import nvimgcodec  # type: ignore[import-not-found, unused-ignore]

    j2k = nvimgcodec.Jpeg2kEncodeParams(reversible=True)
    j2k.ht = True
    if hasattr(nvimgcodec, "Jpeg2kBitstreamType"):
        j2k.bitstream_type = nvimgcodec.Jpeg2kBitstreamType.J2K
    params = nvimgcodec.EncodeParams(
        quality_type=nvimgcodec.QualityType.LOSSLESS, jpeg2k_encode_params=j2k
    )
    images = [nvimgcodec.as_image(np.ascontiguousarray(a[:, :, None])) for a in stored]
    encoded = nvimgcodec.Encoder().encode(images, "jpeg2k", params=params)
    if any(e is None for e in encoded):
        raise RuntimeError("nvImageCodec could not encode every image as HTJ2K")
    return [bytes(e) for e in encoded]


def _gpu(frames: list[bytes], references: list[np.ndarray]) -> tuple[float, float]:
    """(images/s, max |GPU - reference|) of nvImageCodec decoding ``frames`` in one batch."""
    import torch

    from harmonize.dicom.gpu_decode import decode_frames

    decode_frames(frames[:2])  # warm-up: decoder, nvJPEG2000 state, allocations
    torch.cuda.synchronize()
    start = time.perf_counter()
    images = decode_frames(frames, to_host=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    worst = 0.0
    for image, reference in zip(decode_frames(frames[: len(references)]), references, strict=True):
        if image is None or image.shape != reference.shape:
            return len(frames) / seconds, float("inf")
        diff = np.abs(image.astype(np.int64) - reference.astype(np.int64)).max()
        worst = max(worst, float(diff))
    del images
    return len(frames) / seconds, worst


def run_decode(plan: Plan, section: Section, echo: Callable[[str], Any]) -> None:
    from harmonize.dicom.gpu_decode import gpu_decode_problem

    distinct, batch, matrix = (2, 4, 64) if plan.smoke else (8, 64, 2048)
    frames, stored = _codestreams(plan, distinct, matrix)
    section.details.update(
        matrix=matrix,
        batch=batch,
        bits="16 allocated, 12 stored",
        cpu=f"pylibjpeg-openjpeg, one pinned core, {min(CPU_IMAGES, batch)} images",
    )
    problem = gpu_decode_problem()
    kinds: dict[str, tuple[list[bytes], list[np.ndarray]] | str] = {
        "J2K lossless": (frames, stored)
    }
    if problem is None:
        try:
            kinds["HTJ2K lossless"] = (_htj2k(stored), stored)
        except Exception as err:  # noqa: BLE001 - an optional codestream kind
            kinds["HTJ2K lossless"] = (
                f"nvImageCodec could not encode it ({type(err).__name__}: {err})"
            )
    else:
        kinds["HTJ2K lossless"] = (
            "no encoder here (OpenJPEG decodes HTJ2K but cannot encode it; nvImageCodec "
            f"encodes it on a GPU, and {problem})"
        )
    for kind, data in kinds.items():
        if isinstance(data, str):
            section.missing(kind, data)
            continue
        if time.perf_counter() > plan.deadline:
            section.missing(kind, "the section's time budget was spent")
            continue
        codestreams, references = data
        repeated = [codestreams[i % len(codestreams)] for i in range(batch)]
        # One core decodes one image after the other: its rate needs no batch of 64 (at about
        # 0.8 s per 2048² image that alone would take the section's budget).
        cpu = cpu_images_per_s(repeated[:CPU_IMAGES])
        section.figure(f"{kind} CPU images/s (one core)", cpu, "images/s")
        echo(f"  decode {kind}: CPU {cpu:.2f} images/s on one core")
        if problem is not None:
            section.missing(f"{kind} GPU decode", problem)
            continue
        gpu, worst = _gpu(repeated, references)
        section.figure(f"{kind} GPU images/s (batch of {batch})", gpu, "images/s")
        section.figure(f"{kind} GPU / one CPU core", gpu / cpu, "x", TARGET_GPU_OVER_CPU)
        section.figure(f"{kind} max |GPU - CPU|", worst, "", 0.0, at_most=True)
        echo(f"  decode {kind}: GPU {gpu:.1f} images/s, max |diff| {worst:g}")
