"""diffpy-deepstruc: generative starting models for nanoparticle PDF refinement.

A diffpy plugin after DeepStruc (Kjaer, Anker et al., Digital Discovery 2023): a
conditional VAE maps a measured pair distribution function (PDF) to sampled candidate
nanoparticle structures, which are refined with diffpy.srfit and ranked by Rw.
"""

__version__ = "0.1.0"
