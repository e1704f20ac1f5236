"""What users pass in (library core): checks of class names, images and pixel values (`checks.py`), one conversion
of images to 8-bit RGB (`images.py`), the dataset → template table (`templates.py`) and the check that every text
fits the text encoder (`text_fit.py`)."""
