"""DICOM in and out: decoding, pixel values, headers, derived images and de-identification."""
