"""Deterministic, parallel synthesis: fixed-point latent -> uint8 frame.

oneDNN convolutions are about 3x faster here than PyTorch's native path, but split their
reductions by the number of intra-op threads, so 1 and 2 threads round differently.
Every synthesis therefore runs on a worker thread pinned to one intra-op thread: the
result never depends on ``--threads`` or on the worker count, and the cores are used by
synthesising several frames at once instead. This is possible because P-frames predict
from the fixed-point latent, not from pixels, so a frame's pixels are needed by nobody
but the writer (and the encoder's own mode decision).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.models.layers import subpixel_tail

_ONE = 1 << LOG_FRAC_BITS
MAX_WORKERS = 8
# The encoder synthesises a picture as this many bands of rows, separate jobs that the
# workers take in parallel: it waits for each picture before coding the next frame from it,
# and one picture on one thread was its longest wait. (The decoder, whose workers already
# synthesise several frames at once, takes whole pictures: bands cost it their halos.) Each
# band also computes BAND_HALO input rows beyond its own, so its rows are bit for bit the
# whole picture's (one row is not enough; tests/test_synthesis.py checks the shipped video
# model here); rows below the frame are not computed.
ENCODER_BANDS = 2
BAND_HALO = 2


def to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    x = x[0, :, :h, :w].clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


SYNTHESIS_ENV = "LVC_SYNTHESIS"  # "float32": the reference synthesis everywhere


@functools.lru_cache(maxsize=1)
def _native_bf16() -> bool:
    """bfloat16 in hardware (AVX-512 BF16 or AMX) and not capped away by oneDNN's ISA limit:
    ``mkldnn._is_mkldnn_bf16_supported`` alone is also true where oneDNN only emulates it
    (any AVX-512 CPU), which would cost the quality without the speed."""
    try:
        hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        usable = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    capped = cap not in ("ALL", "DEFAULT") and not any(t in cap for t in ("BF16", "AMX", "FP16", "AVX10"))
    return bool(hardware and usable and not capped)


def bf16_synthesis() -> bool:
    """Whether fast-path pictures (conditional frames' displays) are synthesised in
    bfloat16 (all layers but the last): where the CPU computes it natively (AVX-512 BF16,
    AMX), about 2x faster than float32; not I- and P-frames, whose pictures lost 0.14-0.51
    dB to it at 40-47 dB (smooth video). ``LVC_SYNTHESIS=float32`` asks for the reference
    (then for encoding and decoding alike, or the pictures differ slightly).
    Pixels feed nothing the decoder's probabilities depend on, and float32 pictures may
    already differ between CPU families (oneDNN's blocking follows the ISA), so this adds
    no drift: on one machine, encoder and decoder still synthesise the same picture bit
    for bit."""
    return os.environ.get(SYNTHESIS_ENV, "").lower() != "float32" and _native_bf16()


def one_intra_op_thread() -> None:
    """Thread-pool initializer: torch ops of this thread on one intra-op thread. A thread's
    first ``get_num_threads`` (or parallel op) initialises its count from the process-wide
    value the last ``set_num_threads`` anywhere stored, so it runs first: otherwise the main
    thread setting its own count between this and the worker's first op gave the worker that
    count (a worker then refused to run, seen once in the test suite)."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def default_workers() -> int:
    """One synthesis worker per core the process may use (at most ``MAX_WORKERS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads(), MAX_WORKERS))


@contextlib.contextmanager
def serial_main_thread():
    """The decoder's (and encoder's) own thread on one intra-op thread while workers
    synthesise: with two cores, letting its small integer convolutions fan out as well only
    oversubscribes them (measured: decoding 31 -> 43 fps at 416x240, residual P-frames;
    encoding with the motion searched ahead 8.8-9.1 -> 10.5-10.8 fps, session 33)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class WorkerPool:
    """Threads each on one intra-op thread (:func:`one_intra_op_thread`), started on the first
    job and stopped with their owner."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers, self._name = workers, name
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn, *args) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, self._name, initializer=one_intra_op_thread)
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        """Stop the threads (jobs not yet started are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:  # the threads must not outlive their owner
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class Synthesizer:
    """Runs ``g_s`` on single-threaded workers; ``submit`` returns a future frame."""

    def __init__(self, g_s: nn.Sequential, workers: int | None = None, bf16: bool = False, bands: int = 1) -> None:
        self.g_s = subpixel_tail(g_s)  # the picture layer as a 3x3 convolution: 2x faster here
        # output rows per input row
        self.scale = math.prod(m.stride[0] for m in g_s if isinstance(m, nn.ConvTranspose2d))
        self.bf16 = bf16 and bf16_synthesis()
        self.workers = workers or default_workers()
        self.bands = bands  # jobs per picture (see ENCODER_BANDS)
        # Whether bands gave the whole picture bit for bit, checked on the first picture (None:
        # not yet; pictures are whole until it says so): on another CPU oneDNN could choose
        # kernels by the tensors' heights, and the decoder, which takes whole pictures, would
        # then show other ones.
        self._bands_exact: bool | None = None
        self._pool = WorkerPool(self.workers, "lvc-synthesis")

    def _run(self, latent_fx: torch.Tensor, inv_gain: torch.Tensor, h: int, w: int, raw: bool,
             rows: tuple[int, int]) -> np.ndarray | torch.Tensor:
        """Output rows ``scale * rows[0]`` up to ``scale * rows[1]`` (at most ``h``)."""
        if torch.get_num_threads() != 1 or not torch.backends.mkldnn.enabled:
            raise RuntimeError("synthesis worker lost its single-thread oneDNN configuration")
        first, end = rows
        top, bottom = max(0, first - BAND_HALO), min(latent_fx.shape[-2], end + BAND_HALO)
        with torch.no_grad():
            # channels_last: oneDNN's blocked kernels, 1.5x faster here than NCHW.
            y = (latent_fx[..., top:bottom, :].float() / _ONE * inv_gain).contiguous(memory_format=torch.channels_last)
            if not self.bf16:
                x = self.g_s(y)
            else:
                # The last layer stays float32: its output is the picture, which bfloat16
                # would round to steps of up to 1/256 (about one 8-bit level).
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    x = self.g_s[:-1](y)
                x = self.g_s[-1](x.float())
            if x.shape[-2] != self.scale * (bottom - top):
                raise RuntimeError(f"synthesis upsamples {x.shape[-2]} / {bottom - top}, not {self.scale}")
            start = self.scale * (first - top)
            x = x[..., start:start + min(h, self.scale * end) - self.scale * first, :]
            return x[0, :, :, :w].contiguous() if raw else to_uint8(x, x.shape[-2], w)

    def submit(self, latent_fx: torch.Tensor, inv_gain: torch.Tensor, h: int, w: int,
               raw: bool = False) -> Future | Bands:
        """A future frame; ``raw``: the float output (C, h, w) instead of an 8-bit picture."""
        bands = min(self.bands, self.workers)
        if bands > 1 and self._bands_exact is None:
            self._bands_exact = False  # until the check's result
            return self._pool.submit(self._check_bands, latent_fx, inv_gain, h, w, raw, bands)
        jobs = [self._pool.submit(self._run, latent_fx, inv_gain, h, w, raw, band)
                for band in self._bands(latent_fx, h, bands if self._bands_exact else 1)]
        return jobs[0] if len(jobs) == 1 else Bands(jobs, raw)

    def _bands(self, latent_fx: torch.Tensor, h: int, bands: int) -> list[tuple[int, int]]:
        """Input rows of each band: as equal as can be, none below the frame."""
        need = min(latent_fx.shape[-2], -(-h // self.scale))
        cuts = [round(i * need / bands) for i in range(bands + 1)]
        return [band for band in zip(cuts, cuts[1:]) if band[1] > band[0]]

    def _check_bands(self, latent_fx: torch.Tensor, inv_gain: torch.Tensor, h: int, w: int, raw: bool,
                     bands: int) -> np.ndarray | torch.Tensor:
        """The whole picture, and whether ``bands`` bands of it equal it (``_bands_exact``)."""
        whole = self._run(latent_fx, inv_gain, h, w, raw, self._bands(latent_fx, h, 1)[0])
        parts = [self._run(latent_fx, inv_gain, h, w, raw, band) for band in self._bands(latent_fx, h, bands)]
        joined = torch.cat(parts, 1) if raw else np.concatenate(parts, 0)
        self._bands_exact = torch.equal(joined, whole) if raw else np.array_equal(joined, whole)
        return whole

    def defer(self, latent_fx: torch.Tensor, inv_gain: torch.Tensor, h: int, w: int, raw: bool = False) -> Deferred:
        """A frame synthesised only if someone asks for it (rate-control passes and encodes
        without metrics need none: P-frames predict from latents, not pixels)."""
        return Deferred(self, latent_fx, inv_gain, h, w, raw)

    def close(self) -> None:
        self._pool.close()


class Bands:
    """Future-like picture synthesised as bands of rows (``ENCODER_BANDS``)."""

    def __init__(self, jobs: list[Future], raw: bool) -> None:
        self._jobs, self._raw = jobs, raw
        self._picture: np.ndarray | torch.Tensor | None = None
        self._lock = threading.Lock()  # joined once, whichever thread asks first

    def result(self) -> np.ndarray | torch.Tensor:
        with self._lock:
            if self._picture is None:
                parts = [job.result() for job in self._jobs]
                self._picture = torch.cat(parts, 1) if self._raw else np.concatenate(parts, 0)
                self._jobs = []
            return self._picture


class Deferred:
    """Future-like: submits the synthesis on the first ``result()`` call."""

    def __init__(self, synthesis: Synthesizer, *args) -> None:
        self._synthesis, self._args = synthesis, args
        self._future: Future | None = None

    def result(self) -> np.ndarray | torch.Tensor:
        if self._future is None:
            self._future = self._synthesis.submit(*self._args)
        return self._future.result()
