/* Kernels that misbehave the ways real ones do, for the gate tests (tests/python/test_gate.py).
 * Each wraps the correct reference GEMM (reference_kernels.c: e4m3, accumulate "fp32", out "fp32")
 * and then goes wrong in one way. Built by the test with `cc`, one library per -D flag:
 *   -DABI_VERSION=2   exports fp8lab_kernel_abi_version() == 2 (an ABI this fp8lab does not speak)
 * Entry points (all with the fp8lab_gemm_fn signature):
 *   gemm_segv       writes through a null pointer when K > 100 (SIGSEGV on some cases only)
 *   gemm_abort      abort()s when K > 100 (SIGABRT)
 *   gemm_loop       never returns when K > 100
 *   gemm_one_ulp    the last element one ULP up (nextafterf) when it is not zero
 *   gemm_misscaled  uses B's first scale for every tile of B (the per-block scales ignored)
 *   gemm_unpromoted accumulates all of K in a 13-bit-fraction accumulator truncated after every
 *                   add (the Hopper tensor-core behaviour DeepSeek-V3 §3.3.2 promotes around),
 *                   never promoting to FP32; output rounded to bf16 when the spec asks for it */
#define fp8lab_kernel_abi_version reference_abi_version
#include "reference_kernels.c"
#undef fp8lab_kernel_abi_version

#include <stdlib.h>

#ifdef ABI_VERSION
int fp8lab_kernel_abi_version(void) { return ABI_VERSION; }
#else
int fp8lab_kernel_abi_version(void) { return FP8LAB_KERNEL_ABI_VERSION; }
#endif

#define GEMM_ARGS                                                                                             \
  const void *a, const float *a_scales, const void *b, const float *b_scales, size_t m, size_t n, size_t k, \
      const char *spec_json, float *d, char *error, size_t error_len
#define GEMM_PASS a, a_scales, b, b_scales, m, n, k, spec_json, d, error, error_len

int gemm_segv(GEMM_ARGS) {
  if (k > 100) *(volatile int*)0 = 1;
  return fp8lab_gemm(GEMM_PASS);
}

int gemm_abort(GEMM_ARGS) {
  if (k > 100) abort();
  return fp8lab_gemm(GEMM_PASS);
}

int gemm_loop(GEMM_ARGS) {
  volatile unsigned long spin = 0;
  while (k > 100) ++spin;
  return fp8lab_gemm(GEMM_PASS);
}

int gemm_one_ulp(GEMM_ARGS) {
  const int rc = fp8lab_gemm(GEMM_PASS);
  if (rc == 0 && m * n && d[m * n - 1] != 0.0f) d[m * n - 1] = nextafterf(d[m * n - 1], INFINITY);
  return rc;
}

int gemm_misscaled(GEMM_ARGS) {
  size_t btr, btc;
  if (!tile_of(spec_json, "\"b_tile\":", &btr, &btc)) return fail(error, error_len, "spec has no b_tile");
  if (btr == 0) btr = n ? n : 1;
  if (btc == 0) btc = k ? k : 1;
  const size_t count = ((n + btr - 1) / btr) * ((k + btc - 1) / btc);
  float* one = (float*)malloc((count ? count : 1) * sizeof(float));
  for (size_t i = 0; i < count; ++i) one[i] = b_scales[0];
  const int rc = fp8lab_gemm(a, a_scales, b, one, m, n, k, spec_json, d, error, error_len);
  free(one);
  return rc;
}

/* Keep 13 fraction bits (14 significant), truncating toward zero. */
static float truncate13(float v) {
  if (v == 0.0f || !isfinite(v)) return v;
  int e;
  frexpf(v, &e);
  const float q = ldexpf(1.0f, e - 14);
  return truncf(v / q) * q;
}

int gemm_unpromoted(GEMM_ARGS) {
  size_t atr, atc, btr, btc;
  if (!tile_of(spec_json, "\"a_tile\":", &atr, &atc) || !tile_of(spec_json, "\"b_tile\":", &btr, &btc))
    return fail(error, error_len, "spec has no a_tile/b_tile");
  if (atr == 0) atr = m ? m : 1;
  if (atc == 0) atc = k ? k : 1;
  if (btr == 0) btr = n ? n : 1;
  if (btc == 0) btc = k ? k : 1;
  const size_t agc = (k + atc - 1) / atc, bgc = (k + btc - 1) / btc;
  const unsigned char* A = (const unsigned char*)a;
  const unsigned char* B = (const unsigned char*)b;
  for (size_t i = 0; i < m; ++i)
    for (size_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (size_t t = 0; t < k; ++t) {
        const float x = decode_e4m3(A[i * k + t]) * a_scales[(i / atr) * agc + t / atc];
        const float y = decode_e4m3(B[j * k + t]) * b_scales[(j / btr) * bgc + t / btc];
        acc = truncate13(acc + x * y);
      }
      if (strstr(spec_json, "\"out\":\"bf16\"")) { /* round to nearest even at bit 16 */
        unsigned int u;
        memcpy(&u, &acc, 4);
        u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        memcpy(&acc, &u, 4);
      }
      d[i * n + j] = acc;
    }
  (void)error_len;
  return 0;
}
