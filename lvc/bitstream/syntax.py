"""The ``.lvc`` syntax, declared once as data: named fields with widths and ranges.

Packing and parsing are generic over these declarations, every value is range-checked
in both directions, and docs/bitstream.md is generated from (and tested against) them.
All integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lvc.errors import BitstreamError

MAGIC = b"LVC\x1a"
VERSION_MAJOR = 1
VERSION_MINOR = 9  # the newest minor version this lvc writes; a stream carries the lowest it needs
# Minor versions: 1.0 the first; 1.1 adds the grey flag of frame units (GREY_FLAG); 1.2 lets a
# conditional P-frame have another quality than the I- or P-frame that started its context;
# 1.3 adds the residual layer (RESIDUAL_FLAG); 1.4 the colour format COLOUR_YUV420; 1.5 the
# residual layer's deblocking strengths (RESIDUAL_HEADER, lvc.codec.deblock) and frame type 4 (PM);
# 1.6 frame type 5 (PQ: quartered blocks and filters per block, lvc.codec.copies); 1.7 intra
# macroblocks in colour format 1's residual layers (INTRA_FLAG, lvc.codec.intra); 1.8 luma blocks
# coded as four 4x4 transforms in those layers (SMALL_FLAG, lvc.codec.transform); 1.9 frame
# type 6 (IL: an I-frame of the residual layer alone, lvc.codec.layer_intra).
GREY_FLAG = 0x80  # frame_type bit 7: the frame is shown grey
RESIDUAL_FLAG = 0x40  # frame_type bit 6: the payload starts with a residual layer (RESIDUAL_HEADER)
INTRA_FLAG = 0x20  # frame_type bit 5 (since 1.7, with RESIDUAL_FLAG, colour format 1): the layer has intra macroblocks
SMALL_FLAG = 0x10  # frame_type bit 4 (since 1.8, likewise): the layer's coded luma blocks say their transform size
COLOUR_RGB = 0  # colour_format: the picture is 8-bit RGB (shown as yuv420p through swscale)
COLOUR_YUV420 = 1  # colour_format (since 1.4): shown as 8-bit YUV 4:2:0 planes (lvc.codec.colour)

_FIXED = {"u8": "<B", "u16": "<H", "u32": "<I"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # u8 | u16 | u32 | varint | bytes:N | str8 | blob:FIELD (length given by an earlier field)
    lo: int | None = None
    hi: int | None = None
    doc: str = ""

    @property
    def width(self) -> str:
        if self.kind in _FIXED:
            return f"{struct.calcsize(_FIXED[self.kind]) * 8} bits"
        if self.kind == "varint":
            return "1-4 bytes (LEB128)"
        if self.kind.startswith("bytes:"):
            return f"{self.kind.split(':')[1]} bytes"
        if self.kind.startswith("blob:"):
            return f"`{self.kind.split(':')[1]}` bytes"
        return "u8 length + UTF-8"


SEQUENCE_HEADER: tuple[Field, ...] = (
    Field("magic", "bytes:4", doc='`4C 56 43 1A` ("LVC" + 0x1A)'),
    Field("version_major", "u8", VERSION_MAJOR, VERSION_MAJOR, "incompatible changes bump it"),
    Field("version_minor", "u8", 0, 255, "compatible additions; decoders accept any"),
    Field("model_name", "str8", 1, 64, "stable model name, e.g. `lvc-hp64`"),
    Field("weights_hash", "bytes:8", doc="first 8 bytes of the model file's SHA-256"),
    Field("width", "u16", 16, 16384, "luma width in pixels, exact (no padding)"),
    Field("height", "u16", 16, 16384, "luma height in pixels, exact"),
    Field("fps_num", "u32", 1, 1_000_000, "frame rate numerator"),
    Field("fps_den", "u32", 1, 1_000_000, "frame rate denominator"),
    Field("frame_count", "u32", 1, 1 << 24, "number of frame units that follow"),
    Field("colour_format", "u8", 0, 1, "0: 8-bit RGB pictures (shown as BT.601 limited-range YUV 4:2:0 "
          "through swscale); 1 (since 1.4): the shown pictures are 8-bit BT.601 limited-range YUV 4:2:0 "
          "planes, the RGB pictures' exact conversion plus the residual layers, coded in Y, Cb, Cr "
          "(docs: \"Colour formats\")"),
    Field("intra_period", "u16", 0, 65535,
          "forced I-frame period; 0: only the first frame is forced (the encoder may add more)"),
    Field("extension_length", "u16", 0, 4096, "bytes of header extensions that follow (0 in version 1.0)"),
    Field("extensions", "blob:extension_length", doc="reserved for compatible additions; skipped by readers"),
    Field("header_crc", "u32", doc="CRC-32 of all preceding header bytes"),
)

FRAME_HEADER: tuple[Field, ...] = (
    Field("frame_type", "u8", 0, 255,
          "bits 0-3: 0 I, 1 P (latent residual), 2 PC (conditional P), 3 PS (PC with skipped blocks), 4 (since 1.5)"
          " PM (motion only: every block copied), 5 (since 1.6) PQ (PM with choices per block: quartered blocks, "
          "filters), 6 (since 1.9, only with bit 6 in colour format 1) IL (an I-frame of the residual layer alone),"
          " others reserved; bit 4 (since 1.8, only with bit 6 in colour format 1): the residual layer says which "
          "coded luma blocks are four 4x4 transforms (`lvc.codec.transform`); bit 5 (since 1.7, likewise): the "
          "residual layer has intra macroblocks (`lvc.codec.intra`); bit 6 (since 1.3): the payload starts with a "
          "residual layer (`RESIDUAL_HEADER`, then its section, then the frame type's own payload); bit 7 (since "
          "1.1): grey, the picture is shown with R = G = B = (R + G + B + 1) // 3 of the decoded one (colour format"
          " 1: Cb = Cr = 128) (the next frames still predict from the decoded one). A bit set in a stream of an "
          "older minor version is refused as corrupt"),
    Field("quality", "u16", 0, 65535, "quality q = value / 65535"),
    Field("payload_length", "varint", 4, (1 << 28) - 4, "bytes of payload, a multiple of 4"),
    Field("payload_crc", "u32", doc="CRC-32 of the payload"),
)

# The residual layer's header (lvc.codec.residual), at the start of a payload whose frame type
# has RESIDUAL_FLAG; its section follows, then the frame type's own payload.
RESIDUAL_HEADER: tuple[Field, ...] = (
    Field("residual_length", "u32", 4, (1 << 28) - 4, "bytes of the range-coded residual section, a multiple of 4"),
    Field("luma_step", "u8", 0, 51, "step index of the Y plane: `(10, 11, 13, 14, 16, 18)[i % 6] << (i // 6)` "
          "sixteenths of a pixel"),
    Field("chroma_step", "u8", 0, 51, "step index of the chroma planes (Co and Cg, or Cb and Cr)"),
    Field("deblock_luma", "u8", 0, 15, "since 1.5, colour format 1 only (else 0): in-loop deblocking "
          "strength of the Y plane, 0 off (`lvc.codec.deblock`; docs: \"Deblocking\")"),
    Field("deblock_chroma", "u8", 0, 15, "since 1.5, colour format 1 only (else 0): the same for Cb and Cr"),
)

MAX_PIXELS_PER_FRAME = 1 << 26  # 8192 x 8192; a header claiming more is refused before allocating


def pack(fields: tuple[Field, ...], values: dict) -> bytes:
    out = bytearray()
    for f in fields:
        v = values[f.name]
        _check(f, v, "writing")
        if f.kind in _FIXED:
            out += struct.pack(_FIXED[f.kind], v)
        elif f.kind == "varint":
            while True:
                byte, v = v & 0x7F, v >> 7
                out.append(byte | (0x80 if v else 0))
                if not v:
                    break
        elif f.kind.startswith("bytes:"):
            if len(v) != int(f.kind.split(":")[1]):
                raise ValueError(f"{f.name}: expected {f.kind}")
            out += v
        elif f.kind.startswith("blob:"):
            if len(v) != values[f.kind.split(":")[1]]:
                raise ValueError(f"{f.name}: length differs from {f.kind.split(':')[1]}")
            out += v
        else:  # str8
            raw = v.encode()
            out += bytes([len(raw)]) + raw
    return bytes(out)


def unpack(fields: tuple[Field, ...], buf: bytes, pos: int, where: str) -> tuple[dict, int]:
    """Parse ``fields`` from ``buf`` at ``pos``; raise BitstreamError naming ``where`` on any fault."""
    values: dict = {}
    for f in fields:
        try:
            if f.kind in _FIXED:
                (v,) = struct.unpack_from(_FIXED[f.kind], buf, pos)
                pos += struct.calcsize(_FIXED[f.kind])
            elif f.kind == "varint":
                v, shift = 0, 0
                while True:
                    byte = buf[pos]
                    pos += 1
                    v |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                    if shift >= 28:  # 4 bytes carry 28 bits
                        raise BitstreamError(f"{f.name} varint is too long", where, "the file is corrupted")
            elif f.kind.startswith(("bytes:", "blob:")):
                ref = f.kind.split(":")[1]
                n = values[ref] if f.kind.startswith("blob:") else int(ref)
                v = bytes(buf[pos: pos + n])
                if len(v) != n:
                    raise IndexError
                pos += n
            else:
                n = buf[pos]
                raw = bytes(buf[pos + 1: pos + 1 + n])
                if len(raw) != n:
                    raise IndexError
                v = raw.decode()
                pos += 1 + n
        except (IndexError, struct.error):
            raise BitstreamError(f"truncated while reading {f.name}", where, "the file is incomplete") from None
        except UnicodeDecodeError:
            raise BitstreamError(f"{f.name} is not valid UTF-8", where, "the file is corrupted") from None
        _check(f, v, "reading", where)
        values[f.name] = v
    return values, pos


def _check(f: Field, v, action: str, where: str | None = None) -> None:
    n = len(v) if f.kind == "str8" else v
    if f.kind.startswith(("bytes:", "blob:")) or n is None:
        return
    if (f.lo is not None and n < f.lo) or (f.hi is not None and n > f.hi):
        msg = f"{f.name}={v!r} outside [{f.lo}, {f.hi}]"
        if action == "writing":
            raise ValueError(msg)
        raise BitstreamError(msg, where, "the file is corrupted or from an incompatible lvc")


def markdown_table(fields: tuple[Field, ...]) -> str:
    """The syntax table as it appears in docs/bitstream.md."""
    rows = ["| field | coding | range | meaning |", "|---|---|---|---|"]
    for f in fields:
        rng = f"{f.lo}..{f.hi}" if f.lo is not None else "-"
        if f.kind == "str8":
            rng = f"length {rng}"
        rows.append(f"| `{f.name}` | {f.width} | {rng} | {f.doc} |")
    return "\n".join(rows)
