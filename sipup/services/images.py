"""Product images: uploads checked by decoding them, stored once with renditions named by content hash.

The original (EXIF orientation applied, metadata dropped, re-encoded) and each rendition are written to the
file storage (sipup/storage: the instance folder, the database or an object store) when staff upload, never
while a page is served; their URLs carry the original's SHA-256, so a browser may keep them for a year and a
new picture always has a new address.
"""

import hashlib
import io
import warnings

from flask import current_app
from flask_babel import gettext

from sipup.storage import Missing, get_storage

from ..exceptions import InvalidInput, NotFound
from ..extensions import db
from ..i18n import number as number_text
from ..models import ProductImage

FORMATS = {"JPEG", "PNG", "WEBP"}
# name: (width, height) of the box a rendition fits in
SIZES = {"thumb": (96, 96), "card": (320, 240), "page": (800, 600)}


def rendition_key(digest, size):
    """The storage key of one rendition, or NotFound for a name that is none of ours."""
    if size not in SIZES or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise NotFound(gettext("There is no such image."))
    return f"images/{digest}-{size}.webp"


def rendition(digest, size):
    """The bytes of one rendition, or NotFound."""
    try:
        return get_storage().get(rendition_key(digest, size))
    except Missing:
        raise NotFound(gettext("There is no such image.")) from None


def fitted(width, height, size):
    """(width, height) of a picture scaled into a rendition's box, never enlarged."""
    box_w, box_h = SIZES[size]
    scale = min(box_w / width, box_h / height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decoded(data, max_side):
    """The picture in `data`, upright and without metadata; InvalidInput naming what is wrong."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # lazy: Pillow is a start-up cost only pictures pay

    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > max_side * max_side:
        Image.MAX_IMAGE_PIXELS = max_side * max_side  # larger ones are refused before they are decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
            if picture.format not in FORMATS:
                raise InvalidInput(
                    gettext("The file is a %(format)s picture; upload a JPEG, PNG or WebP.", format=picture.format)
                )
            if max(picture.size) > max_side:
                raise InvalidInput(
                    gettext(
                        "The picture is %(width)s × %(height)s pixels; at most %(most)s a side.",
                        width=picture.width,
                        height=picture.height,
                        most=max_side,
                    )
                )
            picture.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(gettext("The picture would decompress to far too many pixels; it was refused.")) from None
    except UnidentifiedImageError:
        raise InvalidInput(gettext("The file is not a picture sipup can read; upload a JPEG, PNG or WebP.")) from None
    except (OSError, SyntaxError, ValueError):
        raise InvalidInput(gettext("The picture is damaged or cut short; upload it again.")) from None
    picture = ImageOps.exif_transpose(picture)
    return picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P") else "RGB")


def add_image(product, data):
    """Check an upload, store it and its renditions, and attach it to the product as its last picture."""
    config = current_app.config
    limit = config["IMAGE_MAX_MB"] * 1_048_576
    if not data:
        raise InvalidInput(gettext("Choose a picture to upload."))
    if len(data) > limit:
        raise InvalidInput(
            gettext(
                "The file is %(size)s MB; at most %(most)s MB.",
                size=number_text(len(data) / 1_048_576, 1),
                most=config["IMAGE_MAX_MB"],
            )
        )
    return store_picture(product, _decoded(data, config["IMAGE_MAX_SIDE"]))


def store_picture(product, picture):
    """Store a decoded picture and its renditions, and attach it to the product as its last picture.

    The files are stored before the picture is attached: when the storage fails (StorageUnavailable), the
    product shows no picture that cannot be served."""
    from PIL import Image  # lazy: Pillow is a start-up cost only pictures pay

    original = io.BytesIO()
    picture.save(original, "WEBP", quality=90)  # a fresh encoding: nothing of the upload's metadata is kept
    digest = hashlib.sha256(original.getvalue()).hexdigest()
    storage = get_storage()
    storage.put(f"images/{digest}.webp", original.getvalue(), "image/webp")
    for size in SIZES:
        copy = picture.copy()
        copy.thumbnail(SIZES[size], Image.Resampling.LANCZOS)
        encoded = io.BytesIO()
        copy.save(encoded, "WEBP", quality=82)
        storage.put(rendition_key(digest, size), encoded.getvalue(), "image/webp")
    position = max((image.position for image in product.images), default=-1) + 1
    image = ProductImage(
        product_id=product.id, digest=digest, width=picture.width, height=picture.height, position=position
    )
    product.images.append(image)
    db.session.commit()
    return image


def remove_image(product, image_id):
    """Take a picture off a product (its files stay: another product may show the same picture)."""
    image = db.session.get(ProductImage, image_id)
    if image is None or image.product_id != product.id:
        raise NotFound(gettext("That picture is no longer there."))
    db.session.delete(image)
    db.session.commit()


def image_row(image):
    """What a page needs to show a picture: its digest and the size of each rendition."""
    if image is None:
        return None
    return _image_values(image.digest, image.width, image.height)


def picture_values(name, category_slug, digest, width, height):
    """What the product_picture macro reads of a product, from columns read without the ORM: its name, first
    picture (none without a digest) and category."""
    image = None if digest is None else _image_values(digest, width, height)
    return {"name": name, "image": image, "category_slug": category_slug}


def _image_values(digest, width, height):
    return {"digest": digest, "sizes": {size: fitted(width, height, size) for size in SIZES}}


def placeholder_picture(text, hue, size=(800, 600)):
    """A plain generated picture (demo data): a coloured field with a bottle shape and a label."""
    from PIL import Image, ImageDraw  # lazy: Pillow is a start-up cost only pictures pay

    picture = Image.new("RGB", size, hue)
    draw = ImageDraw.Draw(picture)
    w, h = size
    draw.rounded_rectangle((w * 0.42, h * 0.18, w * 0.58, h * 0.86), radius=int(w * 0.04), fill=(255, 255, 255))
    draw.rectangle((w * 0.47, h * 0.08, w * 0.53, h * 0.2), fill=(255, 255, 255))
    draw.rectangle((w * 0.42, h * 0.45, w * 0.58, h * 0.62), fill=tuple(max(0, c - 60) for c in hue))
    draw.text((w * 0.05, h * 0.9), text[:40], fill=(255, 255, 255))
    return picture
