"""Sovereign: a user-space GPU driver stack plus runtime, written in Python."""
from setuptools import find_packages, setup

setup(
  name="sovereign",
  version="0.1.0",
  description="User-space GPU drivers (AMD AM, NVIDIA, Qualcomm) and a tinygrad-style tensor runtime",
  python_requires=">=3.11",
  packages=find_packages(include=["am", "am.*", "nvdrv", "nvdrv.*", "qcomdrv", "qcomdrv.*", "frontend", "frontend.*",
                                  "compiler", "compiler.*", "tools", "tools.*"]),
  install_requires=["numpy", "cffi", "pyelftools"],
  extras_require={
    # torch is only a CPU reference for gradient tests; 2.13.0+cpu is the CPU build these machines carry, and pinning it
    # keeps pip from resolving the registry's CUDA build (several GB of CUDA packages).
    "test": ["pytest", "pytest-xdist", "hypothesis", "torch==2.13.0+cpu"],
    "train": ["tqdm", "matplotlib", "safetensors", "scikit-learn"],
    "bench": ["tinygrad"],
  },
  entry_points={"console_scripts": ["sov=tools.sov:main"]},
)
