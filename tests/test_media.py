"""Pictures (decode, refuse, strip every metadata, re-encode) and chunked content (encrypt, address, reassemble)."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, PngImagePlugin

from komrade_dht import envelope as env
from komrade_dht import media
from komrade_dht.errors import ChunksUnavailable, ContentError, ImageError, KomradeError

NOW = 1_800_000_000
GPS = {1: "N", 2: (48.0, 51.0, 24.123), 3: "E", 4: (2.0, 21.0, 7.456), 5: 0, 6: 35.0}


def jpeg(image: Image.Image, **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **kw)
    return out.getvalue()


def png(image: Image.Image, **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **kw)
    return out.getvalue()


def two_colours(width: int = 120, height: int = 60) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (220, 0, 0))
    image.paste((0, 0, 220), (width // 2, 0, width, height))
    return image


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam Inc"  # Make
    exif[0x0131] = "secret-software-1.0"  # Software
    exif[0x8825] = GPS
    return exif


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` pixels: what a decompression bomb looks like to a parser."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_no_metadata(data: bytes) -> None:
    image = reopen(data)
    assert image.format == "JPEG"
    assert len(image.getexif()) == 0
    for key in ("exif", "icc_profile", "comment", "xmp", "photoshop", "adobe"):
        assert key not in image.info, key
    for marker in (b"Exif", b"GPS", b"ICC_PROFILE", b"http://ns.adobe.com", b"secret", b"Secret", b"SecretCam"):
        assert marker not in data, marker
    # only the segments a plain baseline JPEG needs: no APP1..APP15 (EXIF, XMP, ICC, Adobe...) and no COM
    i = 2
    while i < len(data) - 4 and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        assert marker not in range(0xE1, 0xF0) and marker != 0xFE, hex(marker)
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")


# --- sanitize_image: what is kept -------------------------------------------------------------------------------


def test_jpeg_with_exif_gps_comes_out_with_no_metadata_at_all() -> None:
    original = jpeg(two_colours(), exif=exif_with_gps(), comment=b"secret comment", quality=95)
    assert b"Exif" in original and b"secret" in original  # the input really carries them
    assert reopen(original).getexif().get_ifd(0x8825)  # including a GPS block
    out = media.sanitize_image(original)
    assert out.mime == "image/jpeg" and (out.width, out.height) == (120, 60)
    assert_no_metadata(out.data)
    pixels = reopen(out.data).convert("RGB")
    assert pixels.getpixel((10, 30))[0] > 150 and pixels.getpixel((110, 30))[2] > 150  # still the same picture


def test_exif_orientation_is_applied_then_dropped() -> None:
    """Orientation 6 (turn 90 degrees clockwise to view): the output is upright and says nothing about it."""
    out = media.sanitize_image(jpeg(two_colours(120, 60), exif=exif_with_gps(orientation=6)))
    assert (out.width, out.height) == (60, 120)
    pixels = reopen(out.data).convert("RGB")
    assert pixels.getpixel((30, 15))[0] > 150  # the red left half is now the top
    assert pixels.getpixel((30, 105))[2] > 150
    assert_no_metadata(out.data)


def test_png_text_xmp_and_icc_profile_are_stripped() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret-png-comment")
    info.add_text("Author", "Secret Author")
    info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>')
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = png(two_colours(), pnginfo=info, icc_profile=icc)
    assert b"secret-xmp" in original and b"iCCP" in original
    out = media.sanitize_image(original)
    assert_no_metadata(out.data)


def test_webp_with_exif_is_stripped() -> None:
    out = io.BytesIO()
    two_colours().save(out, format="WEBP", exif=exif_with_gps())
    assert b"SecretCam" in out.getvalue()
    assert_no_metadata(media.sanitize_image(out.getvalue()).data)


def test_large_picture_is_scaled_to_max_side() -> None:
    big = two_colours(3000, 1500)
    out = media.sanitize_image(jpeg(big))
    assert (out.width, out.height) == (1280, 640)
    small = media.sanitize_image(jpeg(big), max_side=400)
    assert max(small.width, small.height) == 400


def test_noisy_picture_is_squeezed_under_the_byte_limit() -> None:
    """Noise barely compresses: lower qualities are not enough, so the picture is also made smaller."""
    noise = Image.frombytes("RGB", (900, 700), os.urandom(900 * 700 * 3))
    out = media.sanitize_image(jpeg(noise, quality=95), max_output_bytes=30 * 1024)
    assert len(out.data) <= 30 * 1024
    assert out.width < 900 and reopen(out.data).size == (out.width, out.height)
    default = media.sanitize_image(jpeg(noise, quality=95))
    assert len(default.data) <= 200 * 1024


def test_a_limit_that_cannot_be_met_is_a_clear_error() -> None:
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    with pytest.raises(ImageError, match="cannot be made smaller than 200 bytes"):
        media.sanitize_image(png(noise), max_output_bytes=200)


def test_transparency_becomes_a_white_background() -> None:
    clear = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    out = reopen(media.sanitize_image(png(clear)).data).convert("RGB")
    assert min(out.getpixel((20, 20))) > 240


def test_animated_gif_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(out.getvalue())).n_frames == 3
    result = media.sanitize_image(out.getvalue())
    pixel = reopen(result.data).convert("RGB").getpixel((16, 16))
    assert pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (30, 20), 128),
        Image.new("1", (30, 20), 1),
        Image.new("I;16", (30, 20), 40000),
        Image.new("P", (30, 20), 3),
        Image.new("LA", (30, 20), (10, 200)),
        Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
    ],
    ids=lambda image: image.mode,
)
def test_every_common_pixel_mode_comes_out_as_a_plain_jpeg(image: Image.Image) -> None:
    data = jpeg(image) if image.mode == "CMYK" else png(image)
    out = media.sanitize_image(data)
    assert (out.width, out.height) == (30, 20)
    assert reopen(out.data).mode in ("L", "RGB")
    assert_no_metadata(out.data)


def test_sixteen_bit_grey_keeps_its_brightness() -> None:
    out = media.sanitize_image(png(Image.new("I;16", (8, 8), 0xC000)))
    assert 180 < reopen(out.data).getpixel((4, 4)) < 205  # 0xC000 / 256 = 192


# --- sanitize_image: what is refused ----------------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_its_header_fast() -> None:
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 100
    start = time.perf_counter()
    with pytest.raises(ImageError, match="decompression bomb"):
        media.sanitize_image(bomb)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "width, height, max_pixels", [(8000, 8000, None), (12_000, 12_000, 10**9), (10**5, 10**5, 10**12)]
)
def test_every_bomb_guard_is_an_image_error(width: int, height: int, max_pixels: int | None) -> None:
    """Ours (pixels over max_pixels), Pillow's warning (over 89 Mpx) and Pillow's error (over 179 Mpx)."""
    kw = {} if max_pixels is None else {"max_pixels": max_pixels}
    with pytest.raises(ImageError, match="decompression bomb"):
        media.sanitize_image(png_header(width, height), **kw)  # type: ignore[arg-type]


def test_gif_declaring_a_huge_screen_is_refused() -> None:
    screen = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
    gif = screen + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    with pytest.raises(ImageError, match="decompression bomb"):
        media.sanitize_image(gif)


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "webp"])
def test_truncated_picture_is_refused(kind: str) -> None:
    noise = Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3))
    out = io.BytesIO()
    noise.save(out, format=kind.upper())
    data = out.getvalue()
    with pytest.raises(ImageError, match="damaged or truncated"):
        media.sanitize_image(data[: len(data) // 2])


def test_header_only_is_refused() -> None:
    with pytest.raises(ImageError):
        media.sanitize_image(png(two_colours())[:20])


@pytest.mark.parametrize(
    "data",
    [b"Dear diary, today I met Bob at the square.\n" * 20, b"%PDF-1.7\n" + bytes(200), b"\x00" * 500, b"<svg></svg>"],
    ids=["text", "pdf", "zeros", "svg"],
)
def test_non_images_are_refused(data: bytes) -> None:
    with pytest.raises(ImageError, match="not a picture"):
        media.sanitize_image(data)


def test_formats_outside_the_short_list_are_refused() -> None:
    out = io.BytesIO()
    two_colours().save(out, format="TIFF")
    with pytest.raises(ImageError, match="JPEG, PNG, GIF, WebP or BMP"):
        media.sanitize_image(out.getvalue())


def test_too_large_input_is_refused_before_decoding() -> None:
    data = jpeg(two_colours())
    assert len(data) > 100
    with pytest.raises(ImageError, match=r"at most 100 bytes is accepted"):
        media.sanitize_image(data, max_input_bytes=100)
    with pytest.raises(ImageError, match="10.0 MB is accepted"):
        media.sanitize_image(b"\xff\xd8" + bytes(10 * 1024 * 1024 - 1))


def test_empty_and_non_bytes_are_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        media.sanitize_image(b"")
    with pytest.raises(ImageError, match="bytes"):
        media.sanitize_image("picture.jpg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw", [{"max_side": 0}, {"max_pixels": -1}, {"max_output_bytes": True}, {"max_input_bytes": 1.5}]
)
def test_bad_limits_are_value_errors(kw: dict) -> None:
    with pytest.raises(ValueError):
        media.sanitize_image(b"x", **kw)


def test_image_errors_are_komrade_errors() -> None:
    assert issubclass(ImageError, KomradeError)


SEEDS = [png(two_colours(16, 16)), jpeg(two_colours(16, 16)), png(Image.new("P", (9, 9), 1))]


@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
       st.integers(min_value=0))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mangled_pictures_give_a_picture_or_an_image_error_never_anything_else(
    seed: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for position, value in edits:
        data[position % len(data)] = value
    data = data[: max(1, len(data) - cut % len(data))]
    try:
        out = media.sanitize_image(bytes(data))
    except ImageError:
        return
    assert_no_metadata(out.data)


@given(st.binary(max_size=300))
@settings(max_examples=150, deadline=None)
def test_random_bytes_are_an_image_error(data: bytes) -> None:
    with pytest.raises(ImageError):
        media.sanitize_image(data)


# --- chunks ----------------------------------------------------------------------------------------------------


def encrypt(data: bytes, **kw: object) -> media.EncryptedContent:
    kw.setdefault("now", NOW)
    return media.encrypt_chunks(data, **kw)  # type: ignore[arg-type]


def by_id(chunks: list[bytes]) -> dict[bytes, bytes]:
    return {env.envelope_id(c): c for c in chunks}


def read_back(root_id: bytes, blobs: dict[bytes, bytes], key: bytes) -> bytes:
    return media.decrypt_chunks(media.resolve_manifest(root_id, blobs, key), blobs, key)


def test_a_200_kb_picture_becomes_222_envelopes_of_1_kb() -> None:
    data = os.urandom(200 * 1024)
    manifest, chunks, key = encrypt(data, mime="image/jpeg")
    assert len(key) == 32 and len(chunks) == 222 and manifest.depth == 2
    assert len(manifest.chunk_ids) == 216 and [len(level) for level in manifest.index_levels] == [5]
    for blob in chunks:
        assert len(blob) == 1024
        outer = env.parse_outer(blob, NOW)  # what every node checks before storing: a valid shared-key envelope
        assert outer.kind == env.KIND_SHARED and outer.n_headers == 0 and outer.expires_at == NOW + 14 * 86400
    assert [env.envelope_id(c) for c in chunks] == list(manifest.blob_ids)
    blobs = by_id(chunks)
    resolved = media.resolve_manifest(manifest.root_id, blobs, key)
    assert resolved == manifest and resolved.mime == "image/jpeg" and resolved.length == len(data)
    assert media.decrypt_chunks(resolved, blobs, key) == data


@given(st.binary(min_size=1, max_size=6000), st.sampled_from(env.SIZE_CLASSES))
@settings(max_examples=60, deadline=None)
def test_round_trip_for_any_content_and_size_class(data: bytes, chunk_size: int) -> None:
    manifest, chunks, key = encrypt(data, chunk_size=chunk_size)
    assert all(len(c) == chunk_size for c in chunks)
    assert read_back(manifest.root_id, by_id(chunks), key) == data


@pytest.mark.parametrize("chunk_size", env.SIZE_CLASSES)
def test_largest_content_round_trips_within_the_depth_limit(chunk_size: int) -> None:
    data = os.urandom(media.MAX_CONTENT_BYTES)
    manifest, chunks, key = encrypt(data, chunk_size=chunk_size)
    assert manifest.depth <= media.MAX_DEPTH
    assert read_back(manifest.root_id, by_id(chunks), key) == data


@pytest.mark.parametrize("length", [1, 949, 950, 951, 44 * 950, 44 * 950 + 1])
def test_lengths_at_the_edges_of_a_leaf_and_of_the_root(length: int) -> None:
    data = os.urandom(length)
    manifest, chunks, key = encrypt(data, mime="image/jpeg")
    assert manifest.depth == (1 if length <= 44 * 950 else 2)
    assert read_back(manifest.root_id, by_id(chunks), key) == data


def test_holders_see_nothing_of_the_content_and_nothing_shared_between_two_copies() -> None:
    data = b"MARKER-" * 500
    first, second = encrypt(data), encrypt(data)
    assert first.key != second.key
    blobs_a, blobs_b = set(first.chunks), set(second.chunks)
    assert not blobs_a & blobs_b
    for blob in first.chunks:
        assert b"MARKER" not in blob
    burns = [env.parse_outer(b, NOW).burn_hash for b in first.chunks + second.chunks]
    assert len(set(burns)) == len(burns)  # no burn hash ties a blob to another


def test_missing_chunks_are_named() -> None:
    data = os.urandom(10_000)
    manifest, chunks, key = encrypt(data)
    blobs = by_id(chunks)
    gone = [manifest.chunk_ids[0], manifest.chunk_ids[4], manifest.chunk_ids[-1]]
    for chunk_id in gone:
        del blobs[chunk_id]
    with pytest.raises(ChunksUnavailable, match=r"chunks: 3 missing of 11") as caught:
        media.decrypt_chunks(manifest, blobs, key)
    assert caught.value.missing == tuple(gone) and caught.value.bad == ()
    assert gone[0].hex() in str(caught.value)
    for chunk_id in gone:  # fetched from another holder: now it reads
        blobs[chunk_id] = by_id(chunks)[chunk_id]
    assert media.decrypt_chunks(manifest, blobs, key) == data


def test_bad_chunks_are_named_apart_from_missing_ones() -> None:
    manifest, chunks, key = encrypt(os.urandom(5000))
    blobs = by_id(chunks)
    flipped, swapped, gone = manifest.chunk_ids[1], manifest.chunk_ids[2], manifest.chunk_ids[3]
    blobs[flipped] = blobs[flipped][:-1] + bytes([blobs[flipped][-1] ^ 1])
    blobs[swapped] = blobs[manifest.chunk_ids[0]]  # a holder serving another chunk under this id
    del blobs[gone]
    with pytest.raises(ChunksUnavailable, match="1 missing and 2 failed their checks") as caught:
        media.decrypt_chunks(manifest, blobs, key)
    assert caught.value.missing == (gone,) and caught.value.bad == (flipped, swapped)


def test_a_blob_that_matches_its_id_but_is_not_a_leaf_is_bad() -> None:
    manifest, chunks, key = encrypt(os.urandom(100_000))
    blobs = by_id(chunks)
    wrong = dataclasses.replace(manifest, chunk_ids=(manifest.index_levels[0][0], *manifest.chunk_ids[1:]))
    with pytest.raises(ChunksUnavailable) as caught:
        media.decrypt_chunks(wrong, blobs, key)
    assert caught.value.bad == (manifest.index_levels[0][0],)


def test_resolve_names_what_to_fetch_level_by_level() -> None:
    data = os.urandom(200 * 1024)
    manifest, chunks, key = encrypt(data)
    everything = by_id(chunks)
    fetched: dict[bytes, bytes] = {}
    rounds = 0
    while True:
        try:
            resolved = media.resolve_manifest(manifest.root_id, fetched, key)
            break
        except ChunksUnavailable as exc:
            assert not exc.bad
            fetched.update({i: everything[i] for i in exc.missing})
            rounds += 1
    assert rounds == 2  # the root, then the index blobs; the leaves are decrypt_chunks's business
    assert set(fetched) == {manifest.root_id, *manifest.index_levels[0]}
    assert media.decrypt_chunks(resolved, everything, key) == data


def test_bad_root_or_index_blobs_are_named() -> None:
    manifest, chunks, key = encrypt(os.urandom(100_000))
    blobs = by_id(chunks)
    root = blobs[manifest.root_id]
    with pytest.raises(ChunksUnavailable, match="do not match its id") as caught:
        media.resolve_manifest(manifest.root_id, {**blobs, manifest.root_id: root[:-1] + b"\x00"}, key)
    assert caught.value.bad == (manifest.root_id,)
    index = manifest.index_levels[0][1]
    with pytest.raises(ChunksUnavailable, match="index blobs of the manifest: 1 failed") as caught:
        media.resolve_manifest(manifest.root_id, {**blobs, index: blobs[manifest.chunk_ids[0]]}, key)
    assert caught.value.bad == (index,)


def test_wrong_key_is_a_clear_error() -> None:
    manifest, chunks, _ = encrypt(b"hello")
    with pytest.raises(ContentError, match="does not open with this key"):
        media.resolve_manifest(manifest.root_id, by_id(chunks), os.urandom(32))
    with pytest.raises(ChunksUnavailable) as caught:
        media.decrypt_chunks(manifest, by_id(chunks), os.urandom(32))
    assert caught.value.bad == manifest.chunk_ids
    with pytest.raises(ContentError, match="32 bytes"):
        media.decrypt_chunks(manifest, by_id(chunks), b"short")


def test_a_reader_bounds_what_it_will_fetch() -> None:
    manifest, chunks, key = encrypt(os.urandom(50_000))
    with pytest.raises(ContentError, match="accepts 1 to 10000"):
        media.resolve_manifest(manifest.root_id, by_id(chunks), key, max_length=10_000)


def test_content_that_does_not_match_its_manifest_is_refused() -> None:
    manifest, chunks, key = encrypt(os.urandom(3000))
    for wrong in (dataclasses.replace(manifest, digest=bytes(32)), dataclasses.replace(manifest, length=2999)):
        with pytest.raises(ContentError, match="does not match its manifest"):
            media.decrypt_chunks(wrong, by_id(chunks), key)


def test_burn_secrets_open_every_blobs_burn_hash() -> None:
    burn_root = os.urandom(32)
    manifest, chunks, _ = encrypt(os.urandom(60_000), burn_root=burn_root)
    secrets = media.burn_secrets(burn_root, manifest)
    assert set(secrets) == set(manifest.blob_ids)
    for blob in chunks:
        assert env.burn_hash(secrets[env.envelope_id(blob)]) == env.parse_outer(blob, NOW).burn_hash
    with pytest.raises(ContentError, match="burn root"):
        media.burn_secrets(b"short", manifest)


def test_proof_of_work_is_minted_before_ids_are_taken() -> None:
    calls = []

    def mint(blob: bytes) -> bytes:
        calls.append(blob)
        return blob[:22] + b"\x01" * 8 + blob[30:]

    manifest, chunks, key = encrypt(os.urandom(100_000), mint=mint)
    assert len(calls) == len(chunks)
    assert all(blob[22:30] == b"\x01" * 8 for blob in chunks)
    assert read_back(manifest.root_id, by_id(chunks), key)
    with pytest.raises(ContentError, match="more than the envelope's nonce"):
        encrypt(b"x", mint=lambda blob: blob[:-1] + b"\x00")


@pytest.mark.parametrize(
    "kw, reason",
    [
        ({"chunk_size": 300}, "size classes"),
        ({"chunk_size": True}, "size classes"),
        ({"chunk_size": 1024.0}, "size classes"),
        ({"mime": "Image/JPEG"}, "media type"),
        ({"mime": "jpeg"}, "media type"),
        ({"mime": "image/" + "x" * 40}, "media type"),
        ({"expires_at": NOW}, "expire"),
        ({"expires_at": NOW + 31 * 86400}, "30 days"),
        ({"burn_root": b"short"}, "burn root"),
    ],
)
def test_bad_arguments_are_clear_errors(kw: dict, reason: str) -> None:
    with pytest.raises(ContentError, match=reason):
        encrypt(b"hello", **kw)


def test_empty_and_oversized_content_are_refused() -> None:
    with pytest.raises(ContentError, match="no content"):
        encrypt(b"")
    with pytest.raises(ContentError, match="larger than"):
        encrypt(bytes(media.MAX_CONTENT_BYTES + 1))


def test_ids_of_the_wrong_length_are_refused() -> None:
    manifest, chunks, key = encrypt(b"x")
    with pytest.raises(ContentError, match="20 bytes"):
        media.resolve_manifest(manifest.root_id[:10], by_id(chunks), key)


def test_missing_root_is_named() -> None:
    manifest, _, key = encrypt(b"x")
    with pytest.raises(ChunksUnavailable, match="not been fetched") as caught:
        media.resolve_manifest(manifest.root_id, {}, key)
    assert caught.value.missing == (manifest.root_id,)


def test_chunk_capacity_per_size_class() -> None:
    assert [media.chunk_capacity(s) for s in env.SIZE_CLASSES] == [182, 438, 950]


def test_a_sanitised_picture_goes_through_the_chunks_intact() -> None:
    picture = media.sanitize_image(jpeg(two_colours(2000, 1500), exif=exif_with_gps()))
    manifest, chunks, key = encrypt(picture.data, mime=picture.mime)
    assert read_back(manifest.root_id, by_id(chunks), key) == picture.data
    assert all(b"GPS" not in blob for blob in chunks)


def test_blobs_pass_every_check_a_node_makes_before_storing_them() -> None:
    """With the envelope module's own proof of work (bound to NO_SLOT: stored under its id, in no slot), each
    blob passes parse_outer and check_pow, as ``rpc_store`` requires."""
    cheap = env.PowParams(trials_per_byte=0.0001)
    manifest, chunks, key = encrypt(
        os.urandom(20_000), mint=lambda blob: env.mint_pow(blob, cheap, env.NO_SLOT, NOW)
    )
    for blob in chunks:
        env.parse_outer(blob, NOW)
        assert env.check_pow(blob, cheap, env.NO_SLOT, NOW)
    assert read_back(manifest.root_id, by_id(chunks), key)
