"""PIL for data preparation: decoding image files and resizing a pack's images.

This is the stand-in for the platform's own data files (the hidden set is files at the
platform's size): packs are decoded and, when a size is asked, resized here with PIL
bilinear. It is never a prediction of what a submission computes: a submission resizes
with its own ``tf.image.resize`` (``submission_template/runtime.py``), and every check
that must agree with the submission uses that one.
"""

import os

import numpy as np

from ..errors import UsageError
from . import limits


def resize_for_data_pack(batch, size):
    """Resize a batch of images for a data pack, with PIL bilinear.

    Data preparation only: the images the platform would hand to ``predict()``, as its
    own files at the profile's size would be (a pack written for the child, the build's
    probe batch that ``model.py`` and leafsub's reference both receive). Never a model of
    the submission's own resize, which follows ``tf.image.resize``.

    Args:
      batch: uint8 [b, h, w, 3].
      size: (H, W), or None to keep the batch as it is.

    Returns:
      uint8 [b, H, W, 3]; the batch itself when it is already that size (or size is None).
    """
    if size is None or tuple(batch.shape[1:3]) == tuple(size):
        return batch
    from PIL import Image

    h, w = size
    out = np.empty((len(batch), h, w, 3), dtype=np.uint8)
    for i, image in enumerate(batch):
        out[i] = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return out


def unreadable(name, error):
    """The UsageError for an image file PIL cannot read, naming the file and the fix."""
    return UsageError("%s: cannot read this image (%s: %s). Remove or replace the file, or "
                      "re-save it as PNG/JPEG." % (name, type(error).__name__, error))


def image_file_size(name):
    """(H, W) of an image file, from its header; raises :func:`unreadable` if PIL cannot."""
    from PIL import Image

    try:
        with Image.open(name) as im:
            w, h = im.size
    except Exception as e:  # PIL raises many kinds
        raise unreadable(name, e) from None
    return (h, w)


def load_rgb(name, size, note):
    """One image file as uint8 [H, W, 3] RGB, resized to ``size`` (H, W) when it differs.

    EXIF orientation is ignored and alpha dropped, as TensorFlow's decoders do with
    ``channels=3``; a GIF gives its first frame. Conversions worth telling the user are
    passed to ``note(text)``.
    """
    from PIL import Image

    try:
        with Image.open(name) as im:
            im.load()
            if size is not None and (im.size[1], im.size[0]) != tuple(size):
                target = (size[1], size[0])
            else:
                target = None
            arr = _rgb(im, name, target, note)
    except UsageError:
        raise
    except Exception as e:
        raise unreadable(name, e) from None
    return arr


def _rgb(im, name, target, note):
    """A decoded PIL image as uint8 [h, w, 3] RGB (16-bit and float modes to 8 bits first)."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0
            note("16-bit images (e.g. %s) were scaled to 8 bits" % os.path.basename(name))
        elif mode == "F" and a.size and a.max() <= limits.UNIT_RANGE_MAX:
            a = a * 255.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        note("images with an alpha channel (e.g. %s): alpha dropped, as TensorFlow's "
             "decoders do with channels=3" % os.path.basename(name))
    if mode in ("L", "1", "LA"):
        note("grayscale images (e.g. %s) were repeated to 3 channels" % os.path.basename(name))
    if mode == "CMYK":
        note("CMYK images (e.g. %s) were converted to RGB" % os.path.basename(name))
    if mode != "RGB":
        im = im.convert("RGB")
    if target is not None:
        im = im.resize(target, Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)
