"""Tolerances derived from the values' dtype and magnitude, so comparisons pass on any CPU.

Two float computations of the same sum (batched vs one image, a loop vs a matmul, one BLAS vs
another) differ by their summation order. For a sum of ``terms`` products whose absolute values
add up to at most ``magnitude``, recursive summation errs by at most ``terms · eps · magnitude``
(Higham, *Accuracy and Stability of Numerical Algorithms*, Sec. 4.2); both sides err, and the
weights themselves (a float32 softmax) differ by a few ``eps``, hence the factor 2 and the
``+ 2`` terms below. A fixed ``atol=1e-5`` instead holds only where the sums happen to be small.
"""

from __future__ import annotations

import torch


def summation_atol(terms: int, magnitude: float, dtype: torch.dtype = torch.float32) -> float:
    """The largest difference two summation orders of ``terms`` terms can make (see module doc)."""
    return 2.0 * (terms + 2) * torch.finfo(dtype).eps * float(magnitude)


def assert_sums_close(actual: torch.Tensor, expected: torch.Tensor, terms: int, magnitude: float) -> None:
    """``actual`` and ``expected`` are the same sums of ``terms`` weighted terms, up to summation order.

    ``magnitude`` bounds the sum of the terms' absolute values (for PruMerge's merge, whose
    weights are attention probabilities summing to at most 1 on top of the kept token itself:
    ``2 · max |x|``).
    """
    atol = summation_atol(terms, magnitude, expected.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def assert_close_at_scale(actual: torch.Tensor, expected: torch.Tensor, relative: float = 1e-4) -> None:
    """Network outputs computed two ways: within ``relative`` of the largest value (at least 1)."""
    scale = max(1.0, float(expected.detach().abs().max()))
    torch.testing.assert_close(actual, expected, atol=relative * scale, rtol=relative)
