"""CFGAN's discriminator: is a purchase vector real or generated, given the user's condition vector?"""

from __future__ import annotations

import torch
from torch import Tensor

from adrec.models.gan.generator import ItemMLP

__all__ = ["Discriminator"]


class Discriminator(ItemMLP):
    r"""The discriminator :math:`D(r \mid c_u)` of CFGAN (Chae et al., CIKM 2018).

    An MLP over the concatenation ``[r, c_u]`` (width ``2 n_items``) with one output logit: positive means "real".
    Real inputs are the users' purchase vectors; generated ones are :math:`\hat r_u \odot (c_u + k_u)`, the
    generator's output where the user purchased plus on the partial-masking sample :math:`k_u` (see
    :func:`~adrec.models.gan.trainer.train_cfgan`).

    Parameters
    ----------
    n_items
        Catalogue size.
    hidden_units
        Units of each hidden ReLU layer (default 125).
    hidden_layers
        Number of hidden layers (default 1).
    """

    def __init__(self, n_items: int, hidden_units: int = 125, hidden_layers: int = 1) -> None:
        super().__init__(n_items, 2 * n_items, 1, hidden_units, hidden_layers)

    def forward(self, vector: Tensor, condition: Tensor) -> Tensor:
        """Logits ``(b,)``: how real each row of ``vector`` ``(b, n_items)`` looks given ``condition``."""
        out: Tensor = self.net(torch.cat([vector, condition], dim=1)).squeeze(1)
        return out
