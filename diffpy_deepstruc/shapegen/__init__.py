"""A generator of structures outside its training set: PDF -> latent -> shape code
(a builder's family and arguments) -> atoms.

- :mod:`.codes`: catalog structures as shape codes, and back to builder entries;
- :mod:`.network`: the CVAE / DAE (torch modules);
- :mod:`.training`: training and the checkpoint (safetensors + JSON);
- :mod:`.generator`: :class:`ShapeGenerator`, PDF -> candidate Structures.
"""

from .generator import ShapeGenerator, load_generator

__all__ = ["ShapeGenerator", "load_generator"]
