"""CFGAN's generator: a user's condition vector in, a real-valued purchase vector over all items out."""

from __future__ import annotations

import torch
from torch import Tensor

from adrec.exceptions import ValidationError

__all__ = ["Generator", "ItemMLP", "mlp"]


def mlp(n_in: int, n_out: int, hidden_units: int, hidden_layers: int) -> torch.nn.Sequential:
    """``hidden_layers`` ReLU layers of ``hidden_units`` each, then a linear output layer of ``n_out`` units."""
    if hidden_units < 1:
        raise ValidationError("hidden_units", f"must be >= 1 (got {hidden_units})")
    if hidden_layers < 0:
        raise ValidationError("hidden_layers", f"must be >= 0 (got {hidden_layers})")
    layers: list[torch.nn.Module] = []
    width = n_in
    for _ in range(hidden_layers):
        layers += [torch.nn.Linear(width, hidden_units), torch.nn.ReLU()]
        width = hidden_units
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


class ItemMLP(torch.nn.Module):
    """An :func:`mlp` (``self.net``) over vectors of width ``n_items`` or a multiple: the shared body of the
    generator and the discriminator."""

    def __init__(self, n_items: int, n_in: int, n_out: int, hidden_units: int, hidden_layers: int) -> None:
        super().__init__()
        if n_items < 1:
            raise ValidationError("n_items", f"must be >= 1 (got {n_items})")
        self.n_items = n_items
        self.hidden_units = hidden_units
        self.hidden_layers = hidden_layers
        self.net = mlp(n_in, n_out, hidden_units, hidden_layers)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform weights and zero biases, drawn from ``generator`` (reproducible without the global seed)."""
        for layer in self.net:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(layer.weight, generator=generator)
                torch.nn.init.zeros_(layer.bias)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_items={self.n_items}, hidden={self.hidden_layers}x{self.hidden_units})"


class Generator(ItemMLP):
    r"""The generator :math:`G(c_u)` of CFGAN (Chae et al., CIKM 2018): an MLP from the condition to item logits.

    The condition :math:`c_u` is the user's binary purchase vector ``(n_items,)``; the output
    :math:`\hat r_u = \sigma(G(c_u))` is a real-valued purchase vector in ``[0, 1]^{n_items}``. As in the paper no
    noise is fed in: the target is one vector per user, not a distribution to sample from.

    Parameters
    ----------
    n_items
        Catalogue size (input and output width).
    hidden_units
        Units of each hidden ReLU layer (default 400).
    hidden_layers
        Number of hidden layers (default 1).
    """

    def __init__(self, n_items: int, hidden_units: int = 400, hidden_layers: int = 1) -> None:
        super().__init__(n_items, n_items, n_items, hidden_units, hidden_layers)

    def forward(self, condition: Tensor) -> Tensor:
        """Logits ``(b, n_items)`` of the generated purchase vectors of ``condition`` ``(b, n_items)``."""
        out: Tensor = self.net(condition)
        return out

    def generate(self, condition: Tensor) -> Tensor:
        """The generated purchase vectors :math:`\\hat r_u = \\sigma(G(c_u))`, shape ``(b, n_items)``."""
        return torch.sigmoid(self.forward(condition))
