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
    # nvidia-cuda-nvcc-cu12 brings ptxas (PTX -> cubin for nvdrv; it runs on any x86-64 CPU, no GPU or libcuda),
    # so the test suite checks the PTX renderer and the cubin loader for real, against cuobjdump and nvdisasm.
    # gguf (gguf-py, llama.cpp's reader and writer) lets tests/test_gguf.py write GGUF files and check against its
    # numpy dequantizers; tokenizers, jinja2 and safetensors are the models extra, for tests/test_llama.py and
    # tests/test_bert.py. msgpack is the reference that tests/test_rdna_codeobj.py checks compiler/rdna/msgpack.py
    # against; pyyaml writes and reads the YAML metadata of llvm-mc and llvm-readobj there. mpi4py and mpich (the mpi
    # extra) let tests/test_mpi.py run real MPI jobs of 2 and 3 processes.
    "test": ["pytest", "pytest-xdist", "hypothesis", "torch==2.13.0+cpu", "nvidia-cuda-nvcc-cu12==12.9.86",
             "nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm", "gguf>=0.19", "tokenizers", "jinja2", "safetensors",
             "msgpack", "pyyaml", "mpi4py>=4", "mpich"],
    # DEV=NV: the PTX assembler and, for DEBUG=4, the SASS disassembler (pip wheels; never libcuda)
    "nv": ["nvidia-cuda-nvcc-cu12==12.9.86", "nvidia-cuda-nvdisasm"],
    "train": ["tqdm", "matplotlib", "safetensors", "scikit-learn"],
    # data-parallel training over processes and hosts (frontend.nn.distributed, `sov train-mnist --mpi`): mpi4py, and
    # the mpich wheel, which ships libmpi and mpiexec (no system MPI needed; a system MPI works too, with mpi4py built
    # against it)
    "mpi": ["mpi4py>=4", "mpich"],
    # loading pretrained models: .gguf files (frontend.nn.gguf), their byte-level BPE tokenizer and chat template
    # (frontend.models, `sov run`); BERT sentence encoders from .safetensors and their WordPiece tokenizer.json
    # (frontend.models.bert, `sov embed`)
    "models": ["gguf>=0.19", "tokenizers", "jinja2", "safetensors"],
    # tools/ref_smollm2.py and tools/ref_minilm.py: the torch/transformers reference values in
    # tests/data/smollm2_ref.json and tests/data/minilm_ref.json
    "ref": ["gguf>=0.19", "tokenizers", "torch==2.13.0+cpu", "transformers", "accelerate"],
    "bench": ["tinygrad"],
  },
  entry_points={"console_scripts": ["sov=tools.sov:main"]},
)
