"""Pictures and other large content: sanitised on the author's device, then encrypted into chunks of one envelope.

Pure functions, no I/O: the node (later) stores and fetches the blobs these functions make and read.

**Images** (:func:`sanitize_image`). Decoded with Pillow from a short list of formats (JPEG, PNG, GIF, WebP,
BMP), with every size checked *before* pixels are decoded: the input's bytes, then the pixel count the header
declares (so a decompression bomb costs a header parse, not gigabytes), with Pillow's own bomb guard turned into
an error too. The picture is turned upright by its EXIF orientation, composited on white if it has transparency,
converted to sRGB if it carries a colour profile, scaled to at most ``max_side`` pixels on its longer side, copied
pixel by pixel into a fresh image (so nothing of the original file can ride along: no EXIF and so no GPS, no XMP,
no ICC profile, no comments, no PNG text chunks, no thumbnails), and encoded as a baseline JPEG at decreasing
quality, then decreasing size, until it fits ``max_output_bytes``.

- JPEG, not WebP: WebP would save about a quarter of the bytes, but every viewer (the Kivy app's SDL2 image
  loader included, whatever its build options) reads JPEG. Transparency is lost (white background).
- Animated images (GIF, WebP, APNG) keep their **first frame only**: the network carries stills.

**Chunks** (:func:`encrypt_chunks`, :func:`resolve_manifest`, :func:`decrypt_chunks`). Content is encrypted under a
fresh random 32-byte key and cut into pieces; every piece becomes one *blob*, and a tree of blobs lists them:

- **A blob is an ordinary shared-key envelope** (``KIND_SHARED`` in :mod:`komrade_dht.envelope`, no recipient
  headers) of one size class (``chunk_size``, 1024 bytes by default): ``version 1 | kind 2 | expires_at |
  burn_hash | pow_nonce | 0`` then ``nonce (24) | SecretBox(key, u16 length | tag | content | zero padding)``.
  Nodes already store, check (``parse_outer``, proof of work), expire and burn such envelopes; holders cannot
  tell a chunk from a friends' post of the same size class, nor one picture's chunks from another's (every blob
  has its own random nonce and its own burn hash).
- **Content-addressed**: a blob's id is the envelope id, BLAKE2b-160 of its bytes, so whoever lists an id
  authenticates the whole blob (outer fields included) and any holder or reader can check a blob against it.
- **A tree of manifests**: a *leaf* (tag 1) holds ``chunk_size - 74`` bytes of content (950 of 1024); an *index*
  blob (tag 2) lists up to ``(chunk_size - 74) // 20`` child ids (47); the *root* (tag 3) holds
  ``msgpack([1, mime, length, BLAKE2b-256(content), depth, child ids])`` and up to 44 child ids (for
  ``image/jpeg``). One level of index blobs already reaches 44 x 47 x 950 bytes (1.9 MB, more than
  :data:`MAX_CONTENT_BYTES`): a 200 KB picture is 216 leaves, 5 index blobs and a root (222 blobs of 1 KB). Every
  level is encrypted, so holders learn nothing of the tree; a post carries only the root's id and the key. The
  shape of the tree is a function of ``length``, ``mime`` and ``chunk_size``, so a reader checks it, and its cost
  is bounded by its own ``max_length``, never by what a manifest claims.

Readers fetch the root, call :func:`resolve_manifest` (which names the blobs it still needs, level by level,
through :class:`~komrade_dht.errors.ChunksUnavailable`), fetch those, call it again, then fetch the leaves and call
:func:`decrypt_chunks`, which checks every leaf against its id and the whole against the manifest's length and hash,
and names every missing or bad id.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from nacl import bindings
from nacl.exceptions import CryptoError

from . import codec
from .envelope import FIXED_LEN, KIND_SHARED, SIZE_CLASSES, VERSION, burn_hash, envelope_id
from .errors import ChunksUnavailable, CodecError, ContentError, ImageError
from .slots import DEFAULT_TTL, MAX_TTL

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

__all__ = [
    "SanitizedImage",
    "sanitize_image",
    "Manifest",
    "EncryptedContent",
    "encrypt_chunks",
    "resolve_manifest",
    "decrypt_chunks",
    "burn_secrets",
    "chunk_capacity",
    "MAX_CONTENT_BYTES",
]

KIB, MIB = 1024, 1024 * 1024

# --- images ----------------------------------------------------------------------------------------------------

#: The decoders we let near untrusted bytes (Pillow format ids; MPO camera files open as JPEG).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
#: Enough for a 50-megapixel camera (8160 x 6120 = 49.9 million pixels).
DEFAULT_MAX_PIXELS = 50_000_000
_QUALITIES = (85, 75, 65, 55, 45, 35)
_SHRINK = 0.75
_MIN_SIDE = 16
#: What a hostile file can make a Pillow decoder raise; each becomes an ImageError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError)


@dataclass(frozen=True)
class SanitizedImage:
    """A picture safe to publish: re-encoded JPEG bytes with no metadata, and their dimensions."""

    data: bytes
    width: int
    height: int
    mime: str = "image/jpeg"


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive whole number, not {value!r}")
    return value


def _human(n: int) -> str:
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{n / KIB:.0f} KB" if n >= KIB else f"{n} bytes"


def sanitize_image(
    data: bytes,
    *,
    max_input_bytes: int = 10 * MIB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = 1280,
    max_output_bytes: int = 200 * KIB,
) -> SanitizedImage:
    """Decode a picture and re-encode it as a metadata-free JPEG of at most ``max_side`` pixels a side and
    ``max_output_bytes`` bytes (see the module docstring for every step).

    Raises :class:`~komrade_dht.errors.ImageError` (nothing is published) if the input is empty or larger than
    ``max_input_bytes``, is not a JPEG, PNG, GIF, WebP or BMP picture, declares more than ``max_pixels`` pixels
    (a decompression bomb, refused before decoding), is damaged or truncated, or cannot be made small enough.
    ValueError for a limit that is not a positive whole number.

    CPU-bound (tens to hundreds of milliseconds for a camera photo): run it in a thread from async code. It relies
    on Pillow's default ``ImageFile.LOAD_TRUNCATED_IMAGES = False`` (this module never changes it).
    """
    for value, what in (
        (max_input_bytes, "max_input_bytes"),
        (max_pixels, "max_pixels"),
        (max_side, "max_side"),
        (max_output_bytes, "max_output_bytes"),
    ):
        _positive_int(value, what)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError("a picture must be given as bytes")
    data = bytes(data)
    if not data:
        raise ImageError("the picture is empty (0 bytes)")
    if len(data) > max_input_bytes:
        raise ImageError(f"the picture is {_human(len(data))}; at most {_human(max_input_bytes)} is accepted")
    from PIL import Image  # imported here: a node that never handles pictures does not load Pillow

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _decode(data, max_pixels=max_pixels, max_side=max_side)
    try:
        return _encode_under(_normalise(image, max_side), max_output_bytes)
    except _DECODE_ERRORS:
        raise ImageError("the picture decodes but cannot be converted (an unusual or damaged format)") from None


def _decode(data: bytes, *, max_pixels: int, max_side: int) -> PilImage:
    from PIL import Image, UnidentifiedImageError

    readable = "JPEG, PNG, GIF, WebP or BMP"
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"this is not a picture that can be read here ({readable})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the picture declares so many pixels it looks like a decompression bomb") from None
    except _DECODE_ERRORS:
        raise ImageError(f"the picture's header is damaged or truncated ({readable} expected)") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("the picture has no pixels")
    if width * height > max_pixels:
        raise ImageError(
            f"the picture declares {width} x {height} pixels, more than the {max_pixels:,} accepted "
            "(a decompression bomb, or a picture too large to handle here)"
        )
    try:
        if image.format == "JPEG":
            image.draft(None, (max_side, max_side))  # decode JPEGs at 1/2, 1/4 or 1/8 scale when that is enough
        image.load()  # the first frame only, for animations
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("the picture declares so many pixels it looks like a decompression bomb") from None
    except MemoryError:
        raise ImageError("the picture is too large to decode on this device") from None
    except _DECODE_ERRORS:
        raise ImageError("the picture is damaged or truncated: it does not decode to the end") from None
    return image


def _normalise(image: PilImage, max_side: int) -> PilImage:
    """Upright, opaque, sRGB (or grey), at most ``max_side``, in a fresh image that carries no metadata at all."""
    from PIL import Image, ImageOps

    try:
        upright = ImageOps.exif_transpose(image)
        if upright is not None:
            image = upright
    except _DECODE_ERRORS:
        pass  # unreadable EXIF: keep the pixels as stored
    icc = image.info.get("icc_profile")
    mode = image.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode not in ("L", "RGB"):
        image = image.convert("RGB") if mode != "CMYK" or not icc else image
    if max(image.size) > max_side:  # before the colour conversion: fewer pixels to convert
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if icc and image.mode in ("RGB", "CMYK"):
        image = _to_srgb(image, icc)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return Image.frombytes(image.mode, image.size, image.tobytes())


def _to_srgb(image: PilImage, icc: bytes) -> PilImage:
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        return converted if converted is not None else image.convert("RGB")
    except Exception:  # noqa: BLE001 - a broken or exotic profile: keep the pixels as they are
        return image.convert("RGB")


def _encode_under(image: PilImage, max_output_bytes: int) -> SanitizedImage:
    from PIL import Image

    candidate = image
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            candidate.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= max_output_bytes:
                return SanitizedImage(out.getvalue(), candidate.width, candidate.height)
        width, height = candidate.size
        if min(width, height) <= _MIN_SIDE:
            raise ImageError(f"the picture cannot be made smaller than {_human(max_output_bytes)}")
        size = (max(1, int(width * _SHRINK)), max(1, int(height * _SHRINK)))
        candidate = image.resize(size, Image.Resampling.LANCZOS)


# --- chunks ----------------------------------------------------------------------------------------------------

#: Largest content :func:`encrypt_chunks` makes and, by default, :func:`resolve_manifest` accepts.
MAX_CONTENT_BYTES = 1 * MIB
#: Deepest tree (root, index levels, leaves) a reader follows.
MAX_DEPTH = 6
MANIFEST_VERSION = 1
ID_BYTES = 20
KEY_BYTES = bindings.crypto_secretbox_KEYBYTES
BURN_ROOT_BYTES = 32
_NONCE = bindings.crypto_secretbox_NONCEBYTES
_BOX_OVERHEAD = _NONCE + bindings.crypto_secretbox_MACBYTES
_TAG_LEAF, _TAG_INDEX, _TAG_ROOT = 1, 2, 3
_TAG_NAMES = {_TAG_LEAF: "chunk", _TAG_INDEX: "index", _TAG_ROOT: "manifest"}
_OUTER = struct.Struct(">BBI16s8sB")
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,31}/[a-z0-9][a-z0-9!#$&^_.+-]{0,31}$")


def _room(chunk_size: int) -> int:
    """Bytes for ``tag | content`` inside one blob (after the outer fields, the box and the u16 length)."""
    return chunk_size - FIXED_LEN - _BOX_OVERHEAD - 2


def chunk_capacity(chunk_size: int = SIZE_CLASSES[-1]) -> int:
    """Bytes of content one leaf blob of ``chunk_size`` carries (950 for 1024, 438 for 512, 182 for 256)."""
    return _room(_check_chunk_size(chunk_size)) - 1


def _index_capacity(chunk_size: int) -> int:
    return (_room(chunk_size) - 1) // ID_BYTES


def _root_fields(mime: str, length: int, digest: bytes, depth: int, children: bytes) -> bytes:
    return bytes([_TAG_ROOT]) + codec.pack([MANIFEST_VERSION, mime, length, digest, depth, children])


def _root_capacity(chunk_size: int, mime: str) -> int:
    room, n = _room(chunk_size), 0
    while len(_root_fields(mime, 2**32 - 1, bytes(32), MAX_DEPTH, bytes(ID_BYTES * (n + 1)))) <= room:
        n += 1
    return n


def _shape(length: int, chunk_size: int, mime: str) -> list[int]:
    """Blob counts per level, from the root's children down to the leaves (the last entry is the leaf count)."""
    leaves = max(1, math.ceil(length / chunk_capacity(chunk_size)))
    levels = [leaves]
    root_cap, index_cap = _root_capacity(chunk_size, mime), _index_capacity(chunk_size)
    while levels[0] > root_cap:
        levels.insert(0, math.ceil(levels[0] / index_cap))
    return levels


def _check_chunk_size(chunk_size: object) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size not in SIZE_CLASSES:
        raise ContentError(f"chunk size must be one of the envelope size classes {SIZE_CLASSES}, not {chunk_size!r}")
    return chunk_size


def _check_mime(mime: object) -> str:
    if not isinstance(mime, str) or not _MIME.match(mime):
        raise ContentError(f"{mime!r} is not a media type such as image/jpeg (lower case, at most 65 characters)")
    return mime


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32, person=b"komrade/content").digest()


def _burn_secret(burn_root: bytes, position: int) -> bytes:
    material = position.to_bytes(4, "big")
    return hashlib.blake2b(material, digest_size=16, key=burn_root, person=b"komrade/chunkbrn").digest()


@dataclass(frozen=True)
class Manifest:
    """What a root blob says, with every id of the tree: enough to fetch, check and reassemble the content."""

    root_id: bytes
    """The id of the root blob: what a post or profile carries (with the key)."""
    mime: str
    length: int
    """Bytes of content."""
    digest: bytes
    """BLAKE2b-256 (personalised ``komrade/content``) of the content."""
    chunk_size: int
    """The size class of every blob of this content."""
    index_levels: tuple[tuple[bytes, ...], ...]
    """Ids of the index blobs, level by level from the root down (empty when the root lists the leaves)."""
    chunk_ids: tuple[bytes, ...]
    """Ids of the leaves, in content order."""

    @property
    def depth(self) -> int:
        """Levels below the root: 1 when the root lists the leaves."""
        return len(self.index_levels) + 1

    @property
    def blob_ids(self) -> tuple[bytes, ...]:
        """Every blob id: the root, the index blobs from the top down, the leaves (the order of
        :attr:`EncryptedContent.chunks`)."""
        return (self.root_id, *(i for level in self.index_levels for i in level), *self.chunk_ids)


class EncryptedContent(NamedTuple):
    """What :func:`encrypt_chunks` returns: unpack it as ``manifest, chunks, key``."""

    manifest: Manifest
    chunks: list[bytes]
    """Every blob to store, in :attr:`Manifest.blob_ids` order (root first); each one a KIND_SHARED envelope."""
    key: bytes
    """The 32-byte content key: whoever has it and the root id can read the content."""


def _seal_blob(
    inner: bytes,
    key: bytes,
    *,
    chunk_size: int,
    expires_at: int,
    burn: bytes,
    mint: Callable[[bytes], bytes] | None,
) -> bytes:
    plaintext = len(inner).to_bytes(2, "big") + inner
    plaintext += bytes(chunk_size - FIXED_LEN - _BOX_OVERHEAD - len(plaintext))
    nonce = os.urandom(_NONCE)
    outer = _OUTER.pack(VERSION, KIND_SHARED, expires_at, burn, bytes(8), 0)
    blob = outer + nonce + bindings.crypto_secretbox(plaintext, nonce, key)
    assert len(blob) == chunk_size
    if mint is not None:
        minted = mint(blob)
        if not (isinstance(minted, bytes) and len(minted) == chunk_size and minted[:22] == blob[:22]
                and minted[30:] == blob[30:]):
            raise ContentError("the proof-of-work function changed more than the envelope's nonce")
        blob = minted
    return blob


def encrypt_chunks(
    data: bytes,
    *,
    chunk_size: int = SIZE_CLASSES[-1],
    mime: str = "application/octet-stream",
    expires_at: int | None = None,
    burn_root: bytes | None = None,
    mint: Callable[[bytes], bytes] | None = None,
    now: float | None = None,
) -> EncryptedContent:
    """Encrypt ``data`` under a fresh random key and cut it into blobs of ``chunk_size`` bytes listed by a tree of
    manifests (format in the module docstring). Returns ``(manifest, chunks, key)``.

    ``expires_at`` (default: 14 days from ``now``, at most 30) is written into every blob. ``burn_root`` (32
    bytes) is a secret the author keeps to delete the blobs later (:func:`burn_secrets`); without it each blob gets
    a burn hash nobody knows the secret of, and the blobs can only expire. ``mint`` adds the proof of work to one
    blob (e.g. ``lambda b: envelope.mint_pow(b, params, envelope.NO_SLOT, now)``); it may change only the nonce
    field, and runs before ids are taken, so ids name the finished blobs. Without it the nonce stays zero.

    Raises ContentError for empty content, content over :data:`MAX_CONTENT_BYTES`, a bad chunk size, media type,
    expiry or burn root.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContentError("content must be bytes")
    data = bytes(data)
    if not data:
        raise ContentError("there is no content to publish (0 bytes)")
    if len(data) > MAX_CONTENT_BYTES:
        raise ContentError(f"content of {_human(len(data))} is larger than the {_human(MAX_CONTENT_BYTES)} accepted")
    chunk_size = _check_chunk_size(chunk_size)
    mime = _check_mime(mime)
    now = time.time() if now is None else now
    if expires_at is None:
        expires_at = int(now) + DEFAULT_TTL
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or not now < expires_at <= now + MAX_TTL:
        raise ContentError("content must expire in the future and at most 30 days ahead")
    if burn_root is None:
        burn_root = os.urandom(BURN_ROOT_BYTES)  # forgotten: the blobs will only expire
    if not isinstance(burn_root, bytes) or len(burn_root) != BURN_ROOT_BYTES:
        raise ContentError(f"a burn root is {BURN_ROOT_BYTES} secret bytes")
    key = os.urandom(KEY_BYTES)

    shape = _shape(len(data), chunk_size, mime)  # counts from the root's children down to the leaves
    firsts = [1 + sum(shape[:i]) for i in range(len(shape))]  # position in blob_ids of each level's first blob

    def seal(inner: bytes, position: int) -> bytes:
        return _seal_blob(inner, key, chunk_size=chunk_size, expires_at=expires_at,
                          burn=burn_hash(_burn_secret(burn_root, position)), mint=mint)

    capacity = chunk_capacity(chunk_size)
    level_blobs = [
        seal(bytes([_TAG_LEAF]) + data[i : i + capacity], firsts[-1] + n)
        for n, i in enumerate(range(0, len(data), capacity))
    ]
    levels: list[list[bytes]] = [level_blobs]
    index_cap = _index_capacity(chunk_size)
    for depth in range(len(shape) - 2, -1, -1):
        ids = [envelope_id(b) for b in levels[0]]
        groups = [ids[i : i + index_cap] for i in range(0, len(ids), index_cap)]
        assert len(groups) == shape[depth]
        levels.insert(0, [seal(bytes([_TAG_INDEX]) + b"".join(g), firsts[depth] + n) for n, g in enumerate(groups)])
    children = b"".join(envelope_id(b) for b in levels[0])
    root = seal(_root_fields(mime, len(data), _digest(data), len(shape), children), 0)
    ids_by_level = tuple(tuple(envelope_id(b) for b in level) for level in levels)
    manifest = Manifest(
        root_id=envelope_id(root),
        mime=mime,
        length=len(data),
        digest=_digest(data),
        chunk_size=chunk_size,
        index_levels=ids_by_level[:-1],
        chunk_ids=ids_by_level[-1],
    )
    chunks = [root, *(b for level in levels for b in level)]
    assert [envelope_id(b) for b in chunks] == list(manifest.blob_ids)
    return EncryptedContent(manifest, chunks, key)


def burn_secrets(burn_root: bytes, manifest: Manifest) -> dict[bytes, bytes]:
    """The burn secret of every blob of ``manifest`` made with ``burn_root``: ``{blob id: secret}``. Revealing a
    secret to the blob's holders deletes it (as for any envelope)."""
    if not isinstance(burn_root, bytes) or len(burn_root) != BURN_ROOT_BYTES:
        raise ContentError(f"a burn root is {BURN_ROOT_BYTES} secret bytes")
    return {blob_id: _burn_secret(burn_root, i) for i, blob_id in enumerate(manifest.blob_ids)}


class _Bad(Exception):
    """A blob that does not match its id or does not open as the expected kind (internal)."""


def _open_blob(blob_id: bytes, blob: object, key: bytes, chunk_size: int | None, tag: int) -> bytes:
    """The content of a blob fetched as ``blob_id``, checked against the id first; _Bad if anything is wrong."""
    if not isinstance(blob, bytes) or envelope_id(blob) != blob_id:
        raise _Bad("does not hash to its id")
    if (chunk_size is not None and len(blob) != chunk_size) or len(blob) not in SIZE_CLASSES:
        raise _Bad("has the wrong size")
    boxed = blob[FIXED_LEN:]
    try:
        plaintext = bindings.crypto_secretbox_open(boxed[_NONCE:], boxed[:_NONCE], key)
    except CryptoError:
        raise _Bad("does not decrypt under this key") from None
    length = int.from_bytes(plaintext[:2], "big")
    if not 1 <= length <= len(plaintext) - 2 or plaintext[2] != tag:
        raise _Bad(f"is not a {_TAG_NAMES[tag]} blob")
    return plaintext[3 : 2 + length]


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ContentError(f"a content key is {KEY_BYTES} bytes")
    return key


def _check_id(blob_id: object) -> bytes:
    if not isinstance(blob_id, bytes) or len(blob_id) != ID_BYTES:
        raise ContentError(f"a blob id is {ID_BYTES} bytes")
    return blob_id


def _ids(children: bytes) -> list[bytes]:
    return [children[i : i + ID_BYTES] for i in range(0, len(children), ID_BYTES)]


def _unavailable(what: str, missing: list[bytes], bad: list[bytes], total: int) -> ChunksUnavailable:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing")
    if bad:
        parts.append(f"{len(bad)} failed their checks (wrong bytes: fetch them from another holder)")
    first = (missing or bad)[0].hex()
    return ChunksUnavailable(
        f"{what}: {' and '.join(parts)} of {total} (first: {first})", missing=tuple(missing), bad=tuple(bad)
    )


def resolve_manifest(
    root_id: bytes,
    blobs: Mapping[bytes, bytes],
    key: bytes,
    *,
    max_length: int = MAX_CONTENT_BYTES,
) -> Manifest:
    """Read the tree of manifests under ``root_id`` from the blobs fetched so far (``{id: bytes}``).

    Raises :class:`~komrade_dht.errors.ChunksUnavailable` naming the ids still to fetch (``missing``: the root,
    then one level of index blobs at a time) or to fetch elsewhere (``bad``: bytes that do not hash to their id,
    or do not open); fetch them and call again. Raises ContentError if the root does not open with ``key``
    (wrong key), is malformed, claims more than ``max_length`` bytes, or describes a tree whose shape does not
    match its length. The leaves are not needed here: see :func:`decrypt_chunks`.
    """
    root_id, key = _check_id(root_id), _check_key(key)
    if root_id not in blobs:
        raise ChunksUnavailable("the manifest has not been fetched yet", missing=(root_id,))
    root = blobs[root_id]
    if not isinstance(root, bytes) or envelope_id(root) != root_id:
        raise ChunksUnavailable("the manifest's bytes do not match its id", bad=(root_id,))
    try:
        inner = _open_blob(root_id, root, key, None, _TAG_ROOT)
        fields = codec.unpack(inner, max_len=len(inner), max_depth=1)
        version, mime, length, digest, depth, children = fields
    except (_Bad, CodecError, ValueError, TypeError):
        raise ContentError("the manifest does not open with this key (wrong key, or not a manifest)") from None
    if isinstance(version, bool) or version != MANIFEST_VERSION:
        raise ContentError(f"unknown manifest version {version!r}; this reader speaks version {MANIFEST_VERSION}")
    if not (isinstance(mime, str) and _MIME.match(mime) and isinstance(length, int) and not isinstance(length, bool)
            and isinstance(digest, bytes) and len(digest) == 32 and isinstance(depth, int)
            and isinstance(children, bytes) and len(children) % ID_BYTES == 0):
        raise ContentError("the manifest is malformed")
    if not 1 <= length <= max_length:
        raise ContentError(f"the content claims {length} bytes; this reader accepts 1 to {max_length}")
    chunk_size = len(root)
    shape = _shape(length, chunk_size, mime)
    if depth != len(shape) or len(children) // ID_BYTES != shape[0] or depth > MAX_DEPTH:
        raise ContentError("the manifest's tree does not match the length it claims")
    index_cap = _index_capacity(chunk_size)
    levels: list[tuple[bytes, ...]] = [tuple(_ids(children))]
    for below in shape[1:]:
        missing, bad, next_ids = [], [], []
        for n, blob_id in enumerate(levels[-1]):
            if blob_id not in blobs:
                missing.append(blob_id)
                continue
            try:
                content = _open_blob(blob_id, blobs[blob_id], key, chunk_size, _TAG_INDEX)
            except _Bad:
                bad.append(blob_id)
                continue
            expected = min(index_cap, below - n * index_cap)
            if len(content) != expected * ID_BYTES:
                raise ContentError("an index blob of the manifest lists the wrong number of ids")
            next_ids.extend(_ids(content))
        if missing or bad:
            raise _unavailable("index blobs of the manifest", missing, bad, len(levels[-1]))
        levels.append(tuple(next_ids))
    return Manifest(root_id, mime, length, digest, chunk_size, tuple(levels[:-1]), levels[-1])


def decrypt_chunks(manifest: Manifest, chunks_by_id: Mapping[bytes, bytes], key: bytes) -> bytes:
    """Reassemble the content of ``manifest`` from its leaves (``{id: bytes}``), checking each against its id, its
    size and its key, then the whole against the manifest's length and hash.

    Raises :class:`~komrade_dht.errors.ChunksUnavailable` naming every leaf id that is missing or bad (nothing
    partial is returned: a picture is shown whole or not at all), ContentError if the leaves are all good but the
    result does not match the manifest (a manifest made wrong by its author).
    """
    key = _check_key(key)
    missing, bad, pieces = [], [], []
    for n, chunk_id in enumerate(manifest.chunk_ids):
        if chunk_id not in chunks_by_id:
            missing.append(chunk_id)
            continue
        try:
            piece = _open_blob(chunk_id, chunks_by_id[chunk_id], key, manifest.chunk_size, _TAG_LEAF)
        except _Bad:
            bad.append(chunk_id)
            continue
        pieces.append(piece)
    if missing or bad:
        raise _unavailable("chunks", missing, bad, len(manifest.chunk_ids))
    data = b"".join(pieces)
    if len(data) != manifest.length or _digest(data) != manifest.digest:
        raise ContentError("the reassembled content does not match its manifest's length and hash")
    return data
