"""layoutedit: rearrange the objects of one existing photo with a diffusion model."""

__version__ = "0.1.0"

__all__ = ["__version__"]
