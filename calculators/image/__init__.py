"""Image calculators: ImageToTensor, ColorConvert, Crop (pure operations in ``ops``)."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "ColorConvert": "color_convert",
    "Crop": "crop",
    "ImageToTensor": "image_to_tensor",
}
