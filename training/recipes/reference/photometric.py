"""The colour check of the reference model: a per-photo photometric fit against the product's genuine
print, as exportable tensor code (issue 3).

A photo of a print is, per channel c and location x of the product frame,
    observed_c(x) = print_c(x) * light_c(x) + offset_c
where light_c is smooth (white balance, exposure and shading times a gradient and vignette across the
package) and offset_c is the camera's black level and contrast. A genuine photo fits this model to within
sensor and JPEG noise; a reprint in another ink does not, because one light field cannot turn one ink
into another and leave the others where they are. So each photo's light is fitted (weighted least
squares, made robust by iterative re-weighting so that a changed ink does not pull the fit), and what the
fit cannot explain, averaged over windows because an ink covers an area, is compared with what it is on
genuine photos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FIT_STEP = 2  # the fit reads every 2nd pixel of each axis: 4x fewer equations, the same light field
ROBUST_STEPS = 3  # weighted least-squares fits; each down-weights what the previous one could not explain
CAUCHY = 3.0  # a residual of 3 typical residuals (of this photo, on its print) gets half weight
WINDOW = 11  # residuals are averaged over 11x11 pooled pixels (22x22 px at 640x480): an ink is an area
SPREAD_EPS = 0.001  # added to the genuines' spread of window means (fraction of full scale)
MIN_COVER = 0.5  # a window is scored when at least half of it is scored print


def light_basis(height: int, width: int) -> torch.Tensor:
    """(6, height, width): a quadratic in u, v across the product frame (Legendre terms on [-1, 1], nearly
    orthogonal, so the fit is well conditioned). A quadratic is enough for a gradient times a vignette
    over one face of a package."""
    v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([torch.ones_like(u), u, v, 1.5 * u * u - 0.5, 1.5 * v * v - 0.5, u * v])


def fit_residual(pixels: torch.Tensor, template: torch.Tensor, weight: torch.Tensor,
                 basis: torch.Tensor) -> torch.Tensor:
    """What the photometric model leaves of each photo, (N, 3, h, w), in fractions of full scale.

    pixels, template: (N, 3, h, w), the photo and its product's genuine print; weight: (N, h, w), 1 on the
    print the light is fitted on, 0 elsewhere. The robust weights are scaled by the photo's own typical
    residual, not by the genuines' spread at each location: that spread is large on edges, which would
    then keep full weight however badly a photo's edges are registered."""
    every = (..., slice(None, None, FIT_STEP), slice(None, None, FIT_STEP))
    fit_design = _design(template[every], basis[every])  # (N, 3, pixels read, K+1)
    observed = pixels[every].flatten(2)
    prior = weight[every].flatten(1).unsqueeze(1).expand_as(observed)
    # Normal equations and solve in float64: torch and onnxruntime sum 10^4 terms in different orders.
    design64, observed64 = fit_design.double(), observed.double().unsqueeze(-1)
    weights = prior
    for _ in range(ROBUST_STEPS):
        weighted = design64 * weights.double().unsqueeze(-1)
        coefficients = solve_spd(weighted.transpose(-1, -2) @ design64, (weighted * observed64).sum(-2)).float()
        misfit = observed - (fit_design @ coefficients.unsqueeze(-1)).squeeze(-1)
        typical = 1.25 * (prior * misfit.abs()).sum(-1, keepdim=True) / prior.sum(-1, keepdim=True).clamp_min(1.0)
        weights = prior / (1 + (misfit / (CAUCHY * typical + 1e-4)) ** 2)
    light = (coefficients[..., :-1] @ basis.flatten(1)).view_as(pixels)  # per channel, over the whole frame
    return pixels - (template * light + coefficients[..., -1:].unsqueeze(-1))


def _design(template: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Columns of the model, per channel: the print under each light term, then the offset."""
    lit = template.unsqueeze(2) * basis  # (N, 3, K, h, w)
    columns = torch.cat([lit, torch.ones_like(lit[:, :, :1])], 2)
    return columns.flatten(3).transpose(-1, -2)


def solve_spd(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """x with matrix @ x = rhs for symmetric positive-definite (..., n, n) matrices, by Cholesky unrolled
    over the (small, fixed) n: ONNX has no solver, but it has multiply, add and square root."""
    n = matrix.shape[-1]
    ridge = 1e-6 * sum(matrix[..., i, i] for i in range(n)) / n + 1e-12  # keeps an empty fit finite
    lower: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for j in range(n):
        diagonal = matrix[..., j, j] + ridge - sum((lower[j][k] ** 2 for k in range(j)), torch.zeros_like(ridge))
        lower[j].append(diagonal.clamp_min(1e-12).sqrt())
        for i in range(j + 1, n):
            dot = sum((lower[i][k] * lower[j][k] for k in range(j)), torch.zeros_like(ridge))
            lower[i].append((matrix[..., i, j] - dot) / lower[j][j])
    forward: list[torch.Tensor] = []
    for i in range(n):
        dot = sum((lower[i][k] * forward[k] for k in range(i)), torch.zeros_like(ridge))
        forward.append((rhs[..., i] - dot) / lower[i][i])
    solution: list[torch.Tensor] = [torch.zeros_like(ridge)] * n
    for i in reversed(range(n)):
        dot = sum((lower[k][i] * solution[k] for k in range(i + 1, n)), torch.zeros_like(ridge))
        solution[i] = (forward[i] - dot) / lower[i][i]
    return torch.stack(solution, -1)


def window_means(residual: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual averaged over each WINDOW of scored print (N, 3, h, w), and the share of the window
    that is scored print (N, 1, h, w)."""
    mask = scored.unsqueeze(1)
    total = F.avg_pool2d(residual * mask, WINDOW, stride=1, padding=WINDOW // 2, count_include_pad=True)
    cover = F.avg_pool2d(mask, WINDOW, stride=1, padding=WINDOW // 2, count_include_pad=True)
    return total / cover.clamp_min(1e-3), cover


def window_z(residual: torch.Tensor, window_spread: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """(N, h, w): squared z-score of the window means, summed over channels; window_spread (N, 3, h, w) is
    their spread over the genuines, measured, not assumed: residuals are not independent pixel to pixel
    (JPEG blocks, a registration error along an edge)."""
    means, cover = window_means(residual, scored)
    z = means / (window_spread + SPREAD_EPS)
    return (z**2).sum(1) * (cover[:, 0] >= MIN_COVER).float()
