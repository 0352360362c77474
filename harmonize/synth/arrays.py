"""Array type aliases shared by the synth modules."""

from typing import Any

import numpy as np
import numpy.typing as npt

#: A float image or map (float32 in practice; float64 is accepted wherever it is passed in).
FloatArray = npt.NDArray[np.floating[Any]]
#: Stored DICOM pixel values.
StoredArray = npt.NDArray[np.uint16]
