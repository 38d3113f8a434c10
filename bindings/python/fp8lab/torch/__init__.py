"""fp8lab.torch: the training lab. Train a small DeepSeek-shaped model on the CPU with every Linear
GEMM going through fp8lab's emulated recipes, and measure what each trick costs in the loss.

    import fp8lab.torch as ft
    ft.recipes()                                  # fp32 bf16 deepseek_fp8 ... (rows of data: ft.recipe(name))
    model = ft.convert(my_torch_model, "deepseek_fp8")   # nn.Linear -> Fp8Linear, head/gate kept
    res = ft.train(["bf16", "deepseek_fp8"], seeds=[0, 1, 2], out="train_out")

Needs torch (the package's ``torch`` extra); CPU only.
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as err:  # pragma: no cover - the dev environment has torch
    raise ImportError("fp8lab.torch needs torch: pip install 'fp8lab[torch]'") from err

from .convert import DEFAULT_SKIP, convert, fp8_linears  # noqa: E402
from .data import ByteData  # noqa: E402
from .linear import Fp8Linear, NonFiniteError  # noqa: E402
from .model import ModelConfig, Transformer, sized  # noqa: E402
from .optim import AdamW  # noqa: E402
from .recipes import recipe, recipes  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

__all__ = ["AdamW", "ByteData", "DEFAULT_SKIP", "Fp8Linear", "ModelConfig", "NonFiniteError", "TrainConfig",
           "Transformer", "convert", "fp8_linears", "recipe", "recipes", "sized", "train"]
