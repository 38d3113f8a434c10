/* A tiny external "kernel library" for the verify tests, written against golden/fp8lab_kernel.h
 * with no fp8lab code: it implements two specs independently, in plain C.
 *   fp8lab_cast: float32 -> OCP E4M3FN, round to nearest even, saturating (CUDA satfinite).
 *   fp8lab_gemm: E4M3 x E4M3 block-scaled GEMM, accumulate "fp32" (acc = fl(acc + fl(x*y)) with
 *                x = fl(a*sa), y = fl(b*sb), k in order), output fp32.
 * Built twice by the tests: as is (correct), and with -DPLANTED_BUG, which plants an
 * off-by-one-ULP bug in each: the cast rounds exact ties away from zero instead of to even, and
 * the GEMM nudges every non-zero result up by one ULP when K is not a multiple of 32 (a ragged-K
 * tail bug). Compile with -ffp-contract=off so a*b+c is never fused. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fp8lab_kernel.h"

static int fail(char* error, size_t error_len, const char* what) {
  if (error && error_len) snprintf(error, error_len, "%s", what);
  return 1;
}

/* OCP OFP8 v1.0: E4M3FN has bias 7, no infinities, S.1111.111 is NaN, max finite 448 = 0x7E. */
static unsigned char encode_e4m3(float f) {
  if (isnan(f)) return 0x7F;
  const unsigned char sign = signbit(f) ? 0x80 : 0;
  const double a = fabs((double)f);
  if (a >= 448.0) return sign | 0x7E; /* satfinite: everything beyond max finite (Inf too) -> 448 */
  int e;
  frexp(a, &e);
  int E = e - 1;           /* a in [2^E, 2^(E+1)) */
  if (a == 0 || E < -6) E = -6; /* subnormals share the exponent of the smallest normal binade */
  const double q = ldexp(1.0, E - 3); /* 3 mantissa bits: spacing 2^(E-3); a / q is exact */
#ifdef PLANTED_BUG
  const double r = round(a / q); /* ties away from zero: off by one ULP at every odd tie */
#else
  const double r = nearbyint(a / q); /* the default rounding mode: to nearest, ties to even */
#endif
  const double v = r * q; /* a < 448 keeps v <= 448 */
  if (v == 0) return sign;
  frexp(v, &e);
  E = e - 1;
  if (E < -6) return sign | (unsigned char)(v / ldexp(1.0, -9)); /* subnormal: m * 2^-9 */
  return sign | (unsigned char)((E + 7) << 3) | (unsigned char)((v / ldexp(1.0, E) - 1.0) * 8.0);
}

static float decode_e4m3(unsigned char b) {
  const int sign = b >> 7, E = (b >> 3) & 15, m = b & 7;
  float v;
  if (E == 15 && m == 7) return NAN;
  if (E == 0) v = (float)ldexp(m, -9);
  else v = (float)ldexp(8 + m, E - 10);
  return sign ? -v : v;
}

int fp8lab_kernel_abi_version(void) { return FP8LAB_KERNEL_ABI_VERSION; }

int fp8lab_cast(const float* x, size_t n, const char* spec_json, void* y, char* error, size_t error_len) {
  if (!strstr(spec_json, "\"to\":\"e4m3\"") || !strstr(spec_json, "\"rounding\":\"nearest_even\"") ||
      !strstr(spec_json, "\"overflow\":\"saturate\"") || !strstr(spec_json, "\"flush_subnormals\":false"))
    return fail(error, error_len, "this plug-in implements only e4m3 nearest_even saturate casts");
  unsigned char* out = (unsigned char*)y;
  for (size_t i = 0; i < n; ++i) out[i] = encode_e4m3(x[i]);
  return 0;
}

/* Reads "key":[r,c] from canonical JSON (no whitespace). */
static int tile_of(const char* spec, const char* key, size_t* r, size_t* c) {
  const char* p = strstr(spec, key);
  if (!p) return 0;
  p += strlen(key);
  unsigned long a, b;
  if (sscanf(p, "[%lu,%lu]", &a, &b) != 2) return 0;
  *r = a;
  *c = b;
  return 1;
}

int fp8lab_gemm(const void* a, const float* a_scales, const void* b, const float* b_scales, size_t m, size_t n,
                size_t k, const char* spec_json, float* d, char* error, size_t error_len) {
  if (!strstr(spec_json, "\"accumulate\":\"fp32\"") || !strstr(spec_json, "\"out\":\"fp32\"") ||
      !strstr(spec_json, "\"a_format\":\"e4m3\"") || !strstr(spec_json, "\"b_format\":\"e4m3\""))
    return fail(error, error_len, "this plug-in implements only e4m3 GEMMs with fp32 accumulation and output");
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
        const float p = x * y;
        acc = acc + p;
      }
#ifdef PLANTED_BUG
      if (k % 32 != 0 && acc != 0.0f) acc = nextafterf(acc, INFINITY);
#endif
      d[i * n + j] = acc;
    }
  return 0;
}
