"""Image input: uint8 pixels [height, width, channels] at the recipe's size (scaling to [0, 1] happens in the graph)."""
import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

try:  # libjpeg-turbo called straight from C: a third of PIL's time on a small photo, the same pixels
    import simplejpeg
except ImportError:  # a platform without its wheel: PIL's decoder, which libjpeg-turbo is too
    simplejpeg = None

from .base import BadInput, ModalityKind, decode_files, describe

MAX_SIDE = 4096  # a recipe's image size, per side


FIRST_READ = 1 << 16  # bytes read from an image file at once: a whole small photo
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # O_BINARY: Windows only (looked up once: a miss raises)
DRAFT_FACTOR = 2  # a JPEG at least this many times the target size a side is decoded scaled down (draft)


def load_image(source, size, channels: int) -> np.ndarray:
    """Path, bytes, PIL image or array -> uint8 array [height, width, channels]."""
    height, width = size
    mode = "L" if channels == 1 else "RGB"
    if isinstance(source, np.ndarray):
        image = _array_to_image(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = _decode(source, width, height, mode)
        if isinstance(image, np.ndarray):  # decoded in the target mode
            if image.shape[:2] == (height, width):
                return image
            image = Image.fromarray(image[..., 0] if channels == 1 else image)
    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def _decode(source, width: int, height: int, mode: str) -> Image.Image | np.ndarray:
    """A path, bytes or file object -> its decoded PIL image, or an array [rows, cols, 1|3] where a plain JPEG is
    already in the target mode; errors as BadInput naming the source."""
    try:
        if isinstance(source, (bytes, bytearray)):
            decoded = _decode_jpeg(bytes(source), width, height, mode)
            return _open(io.BytesIO(source), width, height, mode) if decoded is None else decoded
        if isinstance(source, (str, os.PathLike)):
            return _decode_file(source, width, height, mode)
        return _open(source, width, height, mode)
    except FileNotFoundError:
        raise BadInput(f"image file '{source}' not found") from None
    except Image.DecompressionBombError:
        raise BadInput(f"image {describe(source)} declares more than {Image.MAX_IMAGE_PIXELS} pixels (a "
                       f"decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadInput(f"image {describe(source)} is not a readable image ({e.__class__.__name__})") from None


def _decode_file(path, width: int, height: int, mode: str) -> Image.Image | np.ndarray:
    """An image file read with the OS's open / read / close and nothing more: a small photo comes in one read, and a
    file object's extra system calls (fstat, ioctl) cost about as much again as the read in a sandboxed process."""
    fd = os.open(path, OPEN_FLAGS)
    try:
        data = os.read(fd, FIRST_READ)
        if data.startswith(JPEG_SOI):  # read whole, decoded straight from the bytes
            if len(data) == FIRST_READ:
                data = b"".join([data, *iter(lambda: os.read(fd, 1 << 20), b"")])
            decoded = _decode_jpeg(data, width, height, mode)
            return _open(io.BytesIO(data), width, height, mode) if decoded is None else decoded
        with open(fd, "rb", closefd=False) as f:  # another format: Image.open reads what it needs
            f.seek(0)
            return _open(f, width, height, mode)
    finally:
        os.close(fd)


def _open(fp, width: int, height: int, mode: str) -> Image.Image:
    """PIL's own path: Image.open (format detection, header parsed in Python), draft for a large JPEG, load."""
    image = Image.open(fp)
    if image.format == "JPEG" and image.width >= DRAFT_FACTOR * width and image.height >= DRAFT_FACTOR * height:
        # the JPEG decoder scales by 1/2, 1/4 or 1/8 in its DCT (never below the target size): a large
        # photo costs a fraction of a full decode; the resize below finishes, close to the full decode's
        image.draft(mode, (width, height))
    image.load()
    return image


JPEG_SOI = b"\xff\xd8\xff"  # start of image, then a marker's first byte
JPEG_FRAMES = {0xC0, 0xC1, 0xC2}  # baseline, extended and progressive Huffman frames: what libjpeg always decodes
JPEG_LENGTHLESS = {0x01, *range(0xD0, 0xDA)}  # TEM, RSTn, SOI, EOI, and SOS (the data start before any frame)
JPEG_MODES = {1: "L", 3: "RGB"}  # what PIL opens 1 and 3 layers as (4: CMYK, left to Image.open)


def jpeg_frame(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, mode) from an 8-bit JPEG's frame header, found by skipping the segments before it, or None
    for anything else (PIL's Image.open then reads it)."""
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_LENGTHLESS:
            return None
        if marker in JPEG_FRAMES:
            if i + 10 > n or data[i + 4] != 8:
                return None
            rows, cols, mode = (int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big"),
                                JPEG_MODES.get(data[i + 9]))
            return (cols, rows, mode) if rows and cols and mode else None
        if 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame libjpeg may refuse
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _decode_jpeg(data: bytes, width: int, height: int, mode: str) -> Image.Image | np.ndarray | None:
    """A plain JPEG decoded straight from its bytes, without Image.open's header parsing in Python (several times
    the decode of a small photo). In the target mode: libjpeg-turbo through simplejpeg, an array; otherwise PIL's
    decoder (Image.frombytes), the one Image.open's load runs with the same arguments, and the mode converted by
    PIL as before. Both run libjpeg-turbo's default accurate integer DCT and smooth upsampling, so the pixels are
    those of Image.open (tests/test_kinds.py checks every fashion photo and re-encodings). None where PIL's own
    path must decide: not a plain 8-bit JPEG, large enough for draft, past the decompression-bomb limit, or any
    decode error, a truncated file included (Image.open then gives the error its usual way)."""
    frame = jpeg_frame(data) if data.startswith(JPEG_SOI) else None
    if frame is None:
        return None
    cols, rows, own_mode = frame
    if (cols >= DRAFT_FACTOR * width and rows >= DRAFT_FACTOR * height) or \
            (Image.MAX_IMAGE_PIXELS is not None and cols * rows > Image.MAX_IMAGE_PIXELS):
        return None
    try:
        if simplejpeg is not None and own_mode == mode:  # strict: a recoverable libjpeg warning is an error too
            return simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB", strict=True)
        return Image.frombytes(own_mode, (cols, rows), data, "jpeg", own_mode, "")
    except (OSError, ValueError):
        return None


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise BadInput(f"image array has shape {array.shape}; expected [height, width] or [height, width, 1|3|4]")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def _check_pixels(array: np.ndarray) -> None:
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise BadInput(f"image array has dtype {array.dtype}; expected numbers (uint8 0-255 or float 0-1)")
    if array.size == 0:
        raise BadInput(f"image array has shape {list(array.shape)}: no pixels")
    if array.size > Image.MAX_IMAGE_PIXELS * 4:
        raise BadInput(f"image array of {array.size} values is larger than any image this runtime decodes")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise BadInput("image array contains NaN or infinite values")
    if array.min() < 0 or array.max() > 255:
        raise BadInput(f"image values span {array.min():.4g} to {array.max():.4g}; expected 0-255 (or 0-1 floats)")


class ImageKind(ModalityKind):
    name = "image"
    dtype = "uint8"
    default_encoder = "cnn"
    media = True
    streamable = True  # decoded from its files inside the tf.data pipeline when data.streaming says so
    file_suffixes = (".png", ".jpg", ".jpeg", ".bmp")

    def input_shape(self, spec) -> tuple:
        return (*spec.size, spec.channels)

    def problems(self, spec, where: str) -> list[str]:
        if max(spec.size) > MAX_SIDE:
            return [f"{where}.size: {list(spec.size)} is larger than {MAX_SIDE} pixels a side (every image of a batch "
                    f"is held at this size)"]
        return []

    def preprocess_entry(self, spec) -> dict:
        return {"size": list(spec.size), "channels": spec.channels}

    @staticmethod
    def load(pre: dict, source) -> np.ndarray:
        """The one image decoder: path, bytes, PIL image or array -> uint8 [h, w, c] (training and runtime)."""
        return load_image(source, pre["size"], pre["channels"])

    def decode(self, spec, table, tokenizer=None) -> tuple[np.ndarray, dict]:
        pre = self.preprocess_entry(spec)
        return decode_files(spec, table, self.input_shape(spec), np.uint8, lambda path: self.load(pre, path))

    def _prepare(self, entry: dict, value, rate, **resources) -> np.ndarray:
        if isinstance(value, list):
            try:
                value = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                raise BadInput("image given as a list must be numbers [height, width(, channels)]") from None
        if isinstance(value, np.ndarray):
            _check_pixels(value)
        elif not (isinstance(value, (str, bytes, bytearray, Image.Image)) or hasattr(value, "__fspath__")):
            raise BadInput(f"expected an image path, bytes, a PIL image or a pixel array; got {type(value).__name__}")
        return self.load(entry["preprocess"], value)

    # -- TF half --------------------------------------------------------------------------------------------------
    def encoders(self) -> dict:
        from ..models.encoders import image

        return image.ENCODERS

    def augmenter(self, spec):
        """Flip / rotation / crop on uint8 batches; the model only ever sees uint8 pixels, as on a device."""
        aug = spec.augment
        if not (aug.flip or aug.rotation or aug.crop):
            return None
        from ..tfk import keras, tf

        layers = []
        if aug.flip:
            layers.append(keras.layers.RandomFlip("horizontal"))
        if aug.rotation:
            layers.append(keras.layers.RandomRotation(aug.rotation, fill_mode="constant"))
        if aug.crop:
            layers.append(keras.layers.RandomZoom((-aug.crop, 0.0), fill_mode="constant"))

        def apply(images):
            x = tf.cast(images, tf.float32)
            for layer in layers:
                x = layer(x, training=True)
            return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)

        return apply

    def mix(self, v, other, w):
        """Pixels mix linearly and stay uint8 (rounded)."""
        from ..tfk import tf

        mixed = w * tf.cast(v, tf.float32) + (1 - w) * tf.cast(other, tf.float32)
        return tf.cast(tf.round(mixed), v.dtype)
