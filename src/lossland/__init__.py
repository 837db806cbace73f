"""lossland: fast neural-network loss landscapes on PyTorch."""

__version__ = "0.1.0"
