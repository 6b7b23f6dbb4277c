"""The tensor frontend: a tinygrad-compatible Tensor API over Sovereign's compiler and devices.

  from frontend import Tensor, dtypes, Device, TinyJit, Variable, nn
"""
from compiler.dtypes import dtypes
from compiler.ir import BoundVariable, Variable
from frontend.device import Device
from frontend.tensor import Tensor
from frontend.jit import TinyJit
from frontend import nn

__all__ = ["Tensor", "dtypes", "Device", "TinyJit", "Variable", "BoundVariable", "nn"]
