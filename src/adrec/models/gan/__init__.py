"""CFGAN, the collaborative filtering GAN (Chae et al., CIKM 2018), in PyTorch.

- :mod:`~adrec.models.gan.generator`: :class:`Generator`, the condition vector → purchase vector MLP;
- :mod:`~adrec.models.gan.discriminator`: :class:`Discriminator`, real vs generated given the condition;
- :mod:`~adrec.models.gan.trainer`: :func:`train_cfgan`, the alternating loop with partial masking, zero
  reconstruction, both losses logged and mode collapse watched;
- :mod:`~adrec.models.gan.model`: :class:`CFGAN`, the registered recommender (``get_model("cfgan")``).
"""

from adrec.models.gan.discriminator import Discriminator
from adrec.models.gan.generator import Generator
from adrec.models.gan.model import CFGAN, ModeCollapseError, ModeCollapseWarning
from adrec.models.gan.trainer import CollapseMonitor, GANEpoch, GANLog, train_cfgan

__all__ = [
    "CFGAN",
    "CollapseMonitor",
    "Discriminator",
    "GANEpoch",
    "GANLog",
    "Generator",
    "ModeCollapseError",
    "ModeCollapseWarning",
    "train_cfgan",
]
