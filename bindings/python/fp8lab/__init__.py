"""fp8lab: a bit-exact CPU emulator of low-precision (FP8) arithmetic and a test-bed for GPU kernels.

numpy in, numpy out. Every function that changes bits takes its spec by name at the call site.
"""
import pkgutil as _pkgutil

# A plain CMake build puts _core into <build>/python/fp8lab; joining every fp8lab/ folder on
# sys.path lets PYTHONPATH=bindings/python:<build>/python run the package from the source tree.
__path__ = _pkgutil.extend_path(__path__, __name__)

from . import _core  # noqa: E402
from .formats import (  # noqa: E402
    buffer_cache_info, decode, encode, fnuz_to_ocp, format_info, formats, num_threads, ocp_to_fnuz, release_buffer_cache,
    set_num_threads,
)
from .verification import verify  # noqa: E402  (the module is fp8lab.verification)
from .blockgemm import gemm, gemm_bound, gemm_exact, metrics  # noqa: E402
from . import moe  # noqa: E402  (fp8lab.moe.route, .compare, ...)
from . import mla  # noqa: E402  (fp8lab.mla.init_weights, .forward, .build_cache, .decode, .compare)
from .quant import QTensor, from_parts, quantize, retile, scale_rule, scale_rules  # noqa: E402
from .accum import dot, tensor_cores  # noqa: E402
from .scale_check import check_scales  # noqa: E402
from .sweep import sweep  # noqa: E402  (the function; the package is importlib.import_module("fp8lab.sweep"))
from ._recipes import recipe, recipes  # noqa: E402
from .system import build_info, set_cpu  # noqa: E402  (kernel variants: runtime CPU dispatch)
from .microscale import rht16, stochastic_round  # noqa: E402

__version__ = _core.__version__

__all__ = [
    "__version__",
    "build_info",
    "set_cpu",
    "QTensor",
    "check_scales",
    "from_parts",
    "quantize",
    "recipe",
    "recipes",
    "retile",
    "rht16",
    "scale_rule",
    "scale_rules",
    "decode",
    "dot",
    "encode",
    "fnuz_to_ocp",
    "buffer_cache_info",
    "format_info",
    "formats",
    "gemm",
    "gemm_bound",
    "gemm_exact",
    "metrics",
    "mla",
    "moe",
    "num_threads",
    "ocp_to_fnuz",
    "release_buffer_cache",
    "set_num_threads",
    "stochastic_round",
    "sweep",
    "tensor_cores",
    "verify",
]
