"""Image calculators: ImageToTensor, ColorConvert, Crop (pure operations in ``ops``)."""

from calculators.image import color_convert, crop, image_to_tensor  # noqa: F401  (registers them)
