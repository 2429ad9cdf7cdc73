# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Developer tooling (config generation, release zip, MONAI Label smoke server); not shipped in the bundle zip."""
