"""advframe_codeword: MSE losses, random codebooks and Lipschitz bounds (Saito & Roy).

Public API: :class:`CodewordModel`, :func:`make_codebook`, :func:`strip_codebook`,
:func:`load_with_key`, :func:`lipschitz_bounds`, :func:`conv_singular_values`.
"""

from __future__ import annotations

from advframe_codeword.heads import (CodewordModel, codebook_digest, load_with_key, make_codebook,
                                     strip_codebook)
from advframe_codeword.lipschitz import (LipschitzReport, conv2d_operator_norm, conv_singular_values,
                                         linear_operator_norm, lipschitz_bounds, power_iteration_norm)

__all__ = ["CodewordModel", "LipschitzReport", "codebook_digest", "conv2d_operator_norm", "conv_singular_values",
           "linear_operator_norm", "lipschitz_bounds", "load_with_key", "make_codebook", "power_iteration_norm",
           "strip_codebook"]
