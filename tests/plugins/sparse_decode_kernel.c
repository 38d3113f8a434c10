/* An external sparse-decode "kernel" for the verify tests, written against golden/fp8lab_kernel.h
 * with no fp8lab code, from FlashMLA's tests/ref.py ref_sparse_attn_decode and the SM90
 * dequantisation (components/dequant.h: bf16(e4m3 * bf16(scale))): layout v32_fp8_sparse only,
 * scores, softmax and P.V in double, out rounded to BF16 at the end.
 *   fp8lab_mla_sparse_decode: correct.
 * Built with -DPLANTED_BUG it flips the attention sink's sign (out * 1/(1 + exp(lse - sink))). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp8lab_kernel.h"

static int fail(char* error, size_t error_len, const char* what) {
  if (error && error_len) snprintf(error, error_len, "%s", what);
  return 1;
}

static float bf16_round(float x) { /* nearest even on the top 16 bits (finite inputs) */
  unsigned int u;
  memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  memcpy(&x, &u, 4);
  return x;
}

static double e4m3(unsigned char b) { /* OCP E4M3FN: bias 7, S.1111.111 NaN */
  const int e = (b >> 3) & 0xF, m = b & 7;
  const double s = (b & 0x80) ? -1.0 : 1.0;
  if (e == 15 && m == 7) return NAN;
  return s * (e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10));
}

/* A number after "key": in canonical JSON, or -1 when absent or null. */
static double json_number(const char* js, const char* key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char* p = strstr(js, pat);
  if (!p) return -1;
  p += strlen(pat);
  if (strncmp(p, "null", 4) == 0) return -1;
  return strtod(p, NULL);
}

int fp8lab_mla_sparse_decode(const float* q, size_t batch, size_t s_q, size_t heads, size_t d_qk,
                             const uint8_t* kv, size_t blocks, size_t block_bytes, const int32_t* indices,
                             size_t topk, const int32_t* topk_length, const float* attn_sink, const char* spec_json,
                             float* out, float* lse, char* error, size_t error_len) {
  if (!strstr(spec_json, "\"layout\":\"v32_fp8_sparse\"") || d_qk != 576)
    return fail(error, error_len, "this kernel implements layout v32_fp8_sparse only");
  const size_t page = block_bytes / 656;
  if (page == 0 || page * 656 != block_bytes) return fail(error, error_len, "block_bytes is not a multiple of 656");
  double sm = json_number(spec_json, "softmax_scale");
  const float scale = (float)(sm > 0 ? sm : pow(576.0, -0.5)); /* FlashMLA takes a float sm_scale */
  double* k = malloc(sizeof(double) * 576 * (topk ? topk : 1));
  double* p = malloc(sizeof(double) * (topk ? topk : 1));
  if (!k || !p) return fail(error, error_len, "out of memory");
  for (size_t b = 0; b < batch; ++b)
    for (size_t i = 0; i < s_q; ++i) {
      const int32_t* idx = indices + (b * s_q + i) * topk;
      size_t n = 0;
      for (size_t t = 0; t < (size_t)topk_length[b] && t < topk; ++t) {
        if (idx[t] == -1) continue;
        const size_t tok = (size_t)idx[t], blk = tok / page, slot = tok % page;
        if (blk >= blocks) return fail(error, error_len, "index out of range");
        const uint8_t* row = kv + blk * block_bytes + slot * 656;
        for (int tile = 0; tile < 4; ++tile) {
          float s;
          memcpy(&s, row + 512 + 4 * tile, 4);
          const float sb = bf16_round(s);
          for (int c = 0; c < 128; ++c)
            k[n * 576 + tile * 128 + c] = bf16_round((float)(e4m3(row[tile * 128 + c]) * sb));
        }
        for (int c = 0; c < 64; ++c) {
          unsigned int u = (unsigned int)(row[528 + 2 * c] | (row[529 + 2 * c] << 8)) << 16;
          float f;
          memcpy(&f, &u, 4);
          k[n * 576 + 512 + c] = f;
        }
        ++n;
      }
      for (size_t h = 0; h < heads; ++h) {
        const float* qh = q + ((b * s_q + i) * heads + h) * 576;
        float* o = out + ((b * s_q + i) * heads + h) * 512;
        float* l = lse + (b * heads + h) * s_q + i;
        if (n == 0) {
          memset(o, 0, 512 * sizeof(float));
          *l = INFINITY;
          continue;
        }
        double mx = -INFINITY, L = 0;
        for (size_t t = 0; t < n; ++t) {
          double d = 0;
          for (int c = 0; c < 576; ++c) d += (double)qh[c] * k[t * 576 + c];
          p[t] = d * scale;
          if (p[t] > mx) mx = p[t];
        }
        for (size_t t = 0; t < n; ++t) L += (p[t] = exp(p[t] - mx));
        const double lse_d = mx + log(L);
#ifdef PLANTED_BUG
        const double f = 1.0 / (1.0 + exp(lse_d - (double)attn_sink[h]));
#else
        const double f = 1.0 / (1.0 + exp((double)attn_sink[h] - lse_d));
#endif
        for (int c = 0; c < 512; ++c) {
          double acc = 0;
          for (size_t t = 0; t < n; ++t) acc += p[t] * k[t * 576 + c];
          o[c] = bf16_round((float)(acc / L * f));
        }
        *l = (float)lse_d;
      }
    }
  free(k);
  free(p);
  return 0;
}
