"""fp8lab's own Triton kernels: the DeepSeek-V3 arithmetic written as Triton programs, so that the
audit (``fp8lab audit``) and the faithful interpreter (``fp8lab.triton``) have real kernels to work
on. Each module holds one kernel, a host launcher on CPU torch tensors, and ``AUDIT``: the
signatures and compile-time constants the audit compiles it with, one entry per variant.
"""
