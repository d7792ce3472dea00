"""``.lvc`` files: a sequence header followed by self-delimiting frame units.

Writing goes to a temporary file that is renamed into place only when complete, so a
failed encode never leaves a half-written output. Reading is streaming: units are read
and checked one by one, so frames can be decoded before the file is fully read.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from lvc.bitstream import syntax
from lvc.bitstream.syntax import (
    COLOUR_RGB,
    COLOUR_YUV420,
    FRAME_HEADER,
    GREY_FLAG,
    INTRA_FLAG,
    MAGIC,
    RESIDUAL_FLAG,
    RESIDUAL_HEADER,
    SEQUENCE_HEADER,
    SMALL_FLAG,
    VERSION_MAJOR,
    VERSION_MINOR,
)
from lvc.errors import BitstreamError, InputError, OutputError
from lvc.io.writer import default_mode

# PC: conditional P (models with an inter section); PS: PC with skipped blocks
# IL: an I-frame of the residual layer alone (since 1.9; lvc.codec.layer_intra)
FRAME_I, FRAME_P, FRAME_PC, FRAME_PS, FRAME_PM, FRAME_PQ, FRAME_IL = 0, 1, 2, 3, 4, 5, 6  # PM 1.5, PQ 1.6
CONDITIONAL = (FRAME_PC, FRAME_PS, FRAME_PM, FRAME_PQ)  # the frame types coded against the context
MOTION_ONLY_SINCE = {FRAME_PM: (1, 5), FRAME_PQ: (1, 6)}  # the motion-only frame types and their formats
KIND_SINCE = {**MOTION_ONLY_SINCE, FRAME_IL: (1, 9)}  # the frame types later formats added, and their formats
LATENT_FREE = (*CONDITIONAL, FRAME_IL)  # the frame types that carry no intra latent
FRAME_NAMES = {FRAME_I: "I", FRAME_P: "P", FRAME_PC: "PC", FRAME_PS: "PS", FRAME_PM: "PM", FRAME_PQ: "PQ",
               FRAME_IL: "IL"}
MAX_HEADER_BYTES = 4 + 2 + 65 + 8 + 4 * 5 + 1 + 2 + 2 + 4096 + 4


@dataclass(frozen=True)
class SequenceHeader:
    model_name: str
    weights_hash: bytes
    width: int
    height: int
    fps: Fraction
    frame_count: int
    intra_period: int
    version: tuple[int, int] = (VERSION_MAJOR, 0)  # the writer raises the minor to what the frames need
    colour_format: int = COLOUR_RGB  # syntax.COLOUR_RGB | COLOUR_YUV420 (the latter needs 1.4)

    def pack(self) -> bytes:
        values = dict(magic=MAGIC, version_major=self.version[0], version_minor=self.version[1],
                      model_name=self.model_name, weights_hash=self.weights_hash, width=self.width,
                      height=self.height, fps_num=self.fps.numerator, fps_den=self.fps.denominator,
                      frame_count=self.frame_count, colour_format=self.colour_format, intra_period=self.intra_period,
                      extension_length=0, extensions=b"", header_crc=0)
        body = syntax.pack(SEQUENCE_HEADER[:-1], values)
        return body + syntax.pack(SEQUENCE_HEADER[-1:], {"header_crc": zlib.crc32(body)})


@dataclass(frozen=True)
class FrameUnit:
    index: int
    frame_type: int
    quality: int
    payload: bytes
    size: int  # bytes of the whole unit, header included
    grey: bool = False  # shown with R = G = B (syntax.GREY_FLAG)
    residual: bytes | None = None  # the residual layer (header and section; lvc.codec.residual)
    intra: bool = False  # the layer has intra macroblocks (syntax.INTRA_FLAG)
    small: bool = False  # its coded luma blocks say their transform size (syntax.SMALL_FLAG)


def pack_frame(frame_type: int, quality: int, payload: bytes, grey: bool = False,
               residual: bytes | None = None, intra: bool = False, small: bool = False) -> bytes:
    """A frame unit; ``payload`` is the frame type's own, ``residual`` a residual layer to
    put before it (syntax.RESIDUAL_FLAG), ``intra`` whether that has intra macroblocks
    (syntax.INTRA_FLAG), ``small`` whether its luma blocks say their transform size
    (syntax.SMALL_FLAG)."""
    if not 0 <= frame_type < SMALL_FLAG:
        raise ValueError(f"frame type {frame_type} is outside [0, {SMALL_FLAG})")
    if (intra or small or frame_type == FRAME_IL) and not residual:
        raise ValueError("intra macroblocks, transform sizes or an IL frame without a residual layer")
    if frame_type == FRAME_IL and payload:
        raise ValueError("an IL frame has no payload of its own")
    if residual:
        payload = residual + payload
    flags = (GREY_FLAG if grey else 0) | (RESIDUAL_FLAG if residual else 0) | (INTRA_FLAG if intra else 0)
    flags |= SMALL_FLAG if small else 0
    head = syntax.pack(FRAME_HEADER, dict(frame_type=frame_type | flags, quality=quality,
                                          payload_length=len(payload), payload_crc=zlib.crc32(payload)))
    return head + payload


def chain_step(kind: int, quality: int, chain: int | None) -> tuple[int | None, bool]:
    """The quality of the open latent chain after a frame of ``kind`` (an I-, IL or P-frame
    starts or continues it), and whether the frame is a conditional one at another quality
    than the chain's: what format 1.2 allows (the writer's minor version, the reader's check)."""
    if kind in (FRAME_I, FRAME_P, FRAME_IL):
        return quality, False
    return chain, kind in CONDITIONAL and chain is not None and quality != chain


class LvcWriter:
    """Atomic writer: ``write_frame`` appends units; ``commit`` fixes the count and renames."""

    def __init__(self, path: str | os.PathLike, header: SequenceHeader) -> None:
        self.path = Path(path)
        self.header = header
        self.frames = 0
        self.bytes_written = 0
        self.minor = header.version[1]  # raised by the first frame that needs a newer minor version
        if header.colour_format == COLOUR_YUV420:
            self.minor = max(self.minor, 4)
        self._chain_quality: int | None = None  # the last I- or P-frame's quality
        try:
            head = header.pack()  # range-check every field before anything touches the disk
        except ValueError as e:
            raise InputError(f"cannot be coded: {e}", str(self.path)) from None
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if self.path.is_dir():
            raise OutputError("output is a folder", str(self.path), "give a file name ending in .lvc")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        except OSError as e:
            raise OutputError(f"cannot write here ({e.strerror})", str(parent), "choose a writable folder") from None
        self._tmp = Path(tmp)
        self._f = os.fdopen(fd, "wb")
        self._write(head)

    def _write(self, data: bytes) -> None:
        try:
            self._f.write(data)
        except OSError as e:
            self.abort()
            raise OutputError(f"write failed ({e.strerror})", str(self.path)) from None
        self.bytes_written += len(data)

    def write_frame(self, frame_type: int, quality: int, payload: bytes, grey: bool = False,
                    residual: bytes | None = None, intra: bool = False, small: bool = False) -> int:
        if (intra or small or frame_type == FRAME_IL) and self.header.colour_format != COLOUR_YUV420:
            raise ValueError("intra macroblocks, transform sizes and IL frames exist only in colour format 1")
        unit = pack_frame(frame_type, quality, payload, grey, residual, intra, small)
        if grey:
            self.minor = max(self.minor, 1)
        if intra:
            self.minor = max(self.minor, 7)
        if small:
            self.minor = max(self.minor, 8)
        if frame_type in KIND_SINCE:
            self.minor = max(self.minor, KIND_SINCE[frame_type][1])
        if residual:  # (bytes 6-7 of the layer's header: its deblocking strengths, since 1.5)
            self.minor = max(self.minor, 5 if any(residual[6:8]) else 3)
        self._chain_quality, mixed = chain_step(frame_type, quality, self._chain_quality)
        if mixed:
            self.minor = max(self.minor, 2)
        self._write(unit)
        self.frames += 1
        return len(unit)

    def commit(self) -> None:
        if self.frames == 0:
            self.abort()
            raise InputError("no frames to write", str(self.path), "the input has zero frames")
        header = SequenceHeader(**{**self.header.__dict__, "frame_count": self.frames,
                                   "version": (self.header.version[0], self.minor)})
        try:
            self._f.seek(0)
            self._f.write(header.pack())
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            default_mode(self._tmp, 0o666)
            os.replace(self._tmp, self.path)
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot finish the file ({e.strerror})", str(self.path)) from None

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LvcWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()


class LvcReader:
    """Parses the header on open; :meth:`units` yields checked frame units lazily."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        where = str(self.path)
        try:
            self._f = open(self.path, "rb")
        except FileNotFoundError:
            raise InputError("no such file", where, "check the path") from None
        except OSError as e:
            raise InputError(f"cannot open ({e.strerror})", where) from None
        head = self._f.read(MAX_HEADER_BYTES)
        if head[:4] != MAGIC:
            self._f.close()
            raise BitstreamError("not an .lvc file (bad magic)", where, "pass a file written by 'lvc encode'")
        if len(head) > 4 and head[4] != VERSION_MAJOR:
            self._f.close()
            raise BitstreamError(f"format version {head[4]} is not supported (this lvc reads {VERSION_MAJOR})",
                                 where, "use the lvc release that wrote the file")
        try:
            values, pos = syntax.unpack(SEQUENCE_HEADER, head, 0, where)
        except BitstreamError as e:
            self._f.close()
            if len(head) > 5 and head[5] > VERSION_MINOR:  # a value a newer minor version allows, likelier
                raise BitstreamError(e.what, e.where, f"the stream is format {VERSION_MAJOR}.{head[5]}, newer "
                                     f"than this lvc's {VERSION_MAJOR}.{VERSION_MINOR}: decode it with a newer "
                                     "lvc") from None
            raise
        if zlib.crc32(head[: pos - 4]) != values["header_crc"]:
            self._f.close()
            raise BitstreamError("sequence header CRC mismatch", where, "the file is corrupted")
        if values["width"] * values["height"] > syntax.MAX_PIXELS_PER_FRAME:
            self._f.close()
            raise BitstreamError(f"frame size {values['width']}x{values['height']} exceeds the limit", where,
                                 "the file is corrupted")
        version = (values["version_major"], values["version_minor"])
        if values["colour_format"] == COLOUR_YUV420 and version < (1, 4):
            self._f.close()
            raise BitstreamError(f"colour format 1 is not valid in a format {version[0]}.{version[1]} stream", where,
                                 "the file is corrupted")
        self.header = SequenceHeader(
            values["model_name"], values["weights_hash"], values["width"], values["height"],
            Fraction(values["fps_num"], values["fps_den"]), values["frame_count"], values["intra_period"],
            version, values["colour_format"])
        self.header_size = pos
        self._f.seek(pos)

    def units(self) -> Iterator[FrameUnit]:
        where = str(self.path)
        chain = None  # the last I-, IL or P-frame's quality
        for i in range(self.header.frame_count):
            fwhere = f"{where}: frame {i}"
            head = self._f.read(1 + 2 + 4 + 4)
            if not head:
                raise BitstreamError(f"file ends after {i} of {self.header.frame_count} frames", where,
                                     "the file is truncated")
            values, pos = syntax.unpack(FRAME_HEADER, head, 0, fwhere)
            self._f.seek(pos - len(head), os.SEEK_CUR)
            payload = self._f.read(values["payload_length"])
            if len(payload) != values["payload_length"]:
                raise BitstreamError("frame unit is truncated", fwhere, "the file is incomplete")
            if zlib.crc32(payload) != values["payload_crc"]:
                raise BitstreamError("payload CRC mismatch", fwhere, "the file is corrupted")
            if values["payload_length"] % 4:
                raise BitstreamError("payload length is not a multiple of 4", fwhere, "the file is corrupted")
            ft = values["frame_type"]
            for flag, since in ((GREY_FLAG, (1, 1)), (RESIDUAL_FLAG, (1, 3)), (INTRA_FLAG, (1, 7)),
                                (SMALL_FLAG, (1, 8))):
                if ft & flag:
                    self._require(since, f"frame type {ft} is not valid in a format {{}} stream", fwhere)
            layered = ft & RESIDUAL_FLAG and self.header.colour_format == COLOUR_YUV420
            if ft & (INTRA_FLAG | SMALL_FLAG) and not layered:
                raise BitstreamError("intra macroblocks or transform sizes without a colour format 1 residual layer",
                                     fwhere, "the file is corrupted")
            kind = ft & ~(GREY_FLAG | RESIDUAL_FLAG | INTRA_FLAG | SMALL_FLAG)
            if kind in KIND_SINCE:
                self._require(KIND_SINCE[kind], f"frame type {kind} is not valid in a format {{}} stream", fwhere)
            if kind == FRAME_IL and not layered:
                raise BitstreamError("IL frame without a colour format 1 residual layer", fwhere,
                                     "the file is corrupted")
            residual = None
            if ft & RESIDUAL_FLAG:
                head, start = syntax.unpack(RESIDUAL_HEADER, payload, 0, fwhere)
                end = start + head["residual_length"]
                own = len(payload) - end  # the frame type's own payload: none for IL, else at least a word
                if head["residual_length"] % 4 or (own != 0 if kind == FRAME_IL else own < 4):
                    raise BitstreamError("residual layer length is invalid", fwhere, "the file is corrupted")
                if head["deblock_luma"] or head["deblock_chroma"]:
                    self._require((1, 5), "residual layer deblocks, which a format {} stream cannot", fwhere)
                    if self.header.colour_format != COLOUR_YUV420:
                        raise BitstreamError("residual layer deblocks a colour format 0 picture", fwhere,
                                             "the file is corrupted")
                residual, payload = payload[:end], payload[end:]
            chain, mixed = chain_step(kind, values["quality"], chain)
            if mixed:  # before 1.2 a chain has one quality
                self._require((1, 2), "conditional P-frame quality differs from its I- or P-frame's, which a "
                              "format {} stream cannot have", fwhere)
            yield FrameUnit(i, kind, values["quality"], payload, pos + values["payload_length"], bool(ft & GREY_FLAG),
                            residual, bool(ft & INTRA_FLAG), bool(ft & SMALL_FLAG))
        if self._f.read(1):
            raise BitstreamError("trailing bytes after the last frame", where, "the file is corrupted")

    def _require(self, since: tuple[int, int], message: str, where: str) -> None:
        """Refuse as corrupt what a stream older than format ``since`` cannot hold (``message``
        with the stream's version in its ``{}``)."""
        if self.header.version < since:
            raise BitstreamError(message.format(f"{self.header.version[0]}.{self.header.version[1]}"), where,
                                 "the file is corrupted")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LvcReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
