# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""brain_mri_eso_detection: MONAI bundle components for extremely small objects in brain MRI."""

__version__ = "0.1.0"
__all__ = ["__version__"]
