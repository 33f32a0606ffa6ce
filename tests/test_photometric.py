"""The colour check's photometric fit (training/recipes/reference/photometric.py) on crafted prints: a photo's own light is
explained away, a changed ink is not."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.recipes.reference.photometric import fit_residual, light_basis, solve_spd, window_z  # noqa: E402

H, W = 60, 80


def crafted_print() -> torch.Tensor:
    """(1, 3, H, W): a teal base, an orange band and a dark-blue block of 'text'."""
    template = torch.empty(1, 3, H, W)
    template[:] = torch.tensor([0.25, 0.55, 0.6]).view(1, 3, 1, 1)
    template[..., :12, :] = torch.tensor([0.85, 0.55, 0.15]).view(1, 3, 1, 1)
    template[..., 30:40, 20:60] = torch.tensor([0.1, 0.1, 0.35]).view(1, 3, 1, 1)
    return template


def photographed(template: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The print under a white balance, an exposure, a contrast and a light gradient with vignette."""
    generator = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    light = (1 + 0.15 * u - 0.1 * v) * (1 - 0.1 * (u * u + v * v))
    gains = torch.tensor([1.08, 0.95, 0.9]).view(1, 3, 1, 1)
    noise = 0.005 * torch.randn(template.shape, generator=generator)
    return template * light * gains * 0.9 + 0.04 + noise


def residual_of(photo: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    return fit_residual(photo, template, torch.ones(1, H, W), light_basis(H, W))


def test_solve_spd_matches_a_library_solver():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, 7, 7, generator=generator, dtype=torch.float64)
    matrix = a @ a.transpose(-1, -2) + 0.1 * torch.eye(7, dtype=torch.float64)
    rhs = torch.randn(4, 3, 7, generator=generator, dtype=torch.float64)
    solution = solve_spd(matrix, rhs)
    assert torch.allclose((matrix @ solution.unsqueeze(-1)).squeeze(-1), rhs, atol=1e-4)  # up to its tiny ridge
    assert torch.allclose(solution, torch.linalg.solve(matrix, rhs.unsqueeze(-1)).squeeze(-1), rtol=1e-3, atol=1e-3)


def test_the_photos_own_light_is_explained_away():
    template = crafted_print()
    residual = residual_of(photographed(template), template)
    assert residual.abs().mean() < 0.006  # the 0.005 sensor noise, nothing of the light left
    raw = (photographed(template) - template).abs().mean()
    assert raw > 0.05  # the light did change the pixels by ten times that


def test_a_changed_ink_is_left_where_it_is_printed():
    """The text's ink turned from dark blue to dark violet: no light field does that to one ink and not
    to the base around it."""
    template = crafted_print()
    counterfeit = template.clone()
    counterfeit[..., 30:40, 20:60] = torch.tensor([0.2, 0.1, 0.35]).view(1, 3, 1, 1)
    residual = residual_of(photographed(counterfeit), template).abs().mean(1)[0]
    assert residual[32:38, 22:58].mean() > 5 * residual[16:28].mean()
    spread, scored = torch.full((1, 3, H, W), 0.01), torch.ones(1, H, W)
    genuine_peak = window_z(residual_of(photographed(template, seed=1), template), spread, scored).max()
    counterfeit_peak = window_z(residual_of(photographed(counterfeit, seed=1), template), spread, scored).max()
    assert counterfeit_peak > 5 * genuine_peak


def test_the_fit_holds_when_the_changed_ink_covers_most_of_the_print():
    """Robust weights: when the base ink itself changed, the fit follows the majority and the other inks
    show it, rather than a compromise that hides the change everywhere."""
    template = crafted_print()
    counterfeit = template.clone()
    base = (template - torch.tensor([0.25, 0.55, 0.6]).view(1, 3, 1, 1)).abs().sum(1, keepdim=True) < 1e-6
    counterfeit = torch.where(base, torch.tensor([0.25, 0.62, 0.5]).view(1, 3, 1, 1), counterfeit)
    spread, scored = torch.full((1, 3, H, W), 0.01), torch.ones(1, H, W)
    genuine_peak = window_z(residual_of(photographed(template), template), spread, scored).max()
    assert window_z(residual_of(photographed(counterfeit), template), spread, scored).max() > 5 * genuine_peak
