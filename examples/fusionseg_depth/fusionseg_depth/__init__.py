"""fusionseg plugin: image-guided depth completion (RGB image + sparse disparity samples -> dense disparity).

Importing the package registers its parts (the ``fusionseg.plugins`` entry point does it for you):
data source ``stereo-motorcycle``, head ``residual``, loss ``silog``. See
``docs/bring-your-own-domain.md`` in the fusionseg repository.
"""

from fusionseg_depth import data, heads, losses  # noqa: F401  (registers the parts)

__all__ = ["data", "heads", "losses"]
