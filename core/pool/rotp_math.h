/*
** rotp_math.h -- the elementwise numerics shared by the ROTP solvers: a vectorisable exp for `real`, softplus
** with PyTorch's threshold, and the attribute that builds AVX-512 / AVX2 copies of the hot loops (selected at load
** time, so the Makefile's generic -O2 build still uses the wide registers). Internal to core/pool/rotp*.c.
*/
#ifndef RL_ROTP_MATH_H
#define RL_ROTP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../rl.h"

/* GCC's default -ftrapping-math forbids if-converting the range checks of rl_exp (it sinks the polynomial under
** them, where an FP exception could not be speculated), so without AVX-512 masks every loop that calls it stayed
** scalar: 10x more instructions on AVX2 machines. No code of the ROTP files relies on floating-point traps, and
** the option changes no result (it allows no reassociation). Every file that includes this header gets it. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
/* -std=c11 turns contraction off (fp-contract=off): without it no clone would use FMA, and rl_exp's polynomial and
** every multiply-add of the hot loops take twice the instructions. Contraction changes roundings only (within the
** float tolerances); the double build keeps libm's exp and log. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

/* Hot loops carry this: one clone per x86-64 level (v4: AVX-512; v3: AVX2 with FMA), picked by the loader (GCC
** ifunc). The sanitizer build keeps a single copy so its reports stay readable. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define RL_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RL_HOT
#endif

#ifdef RL_DOUBLE
/* The double build checks gradients against golden vectors at 1e-6 and finite differences: libm's exp. */
static inline real rl_exp(real x) { return exp(x); }
#else
/* exp for float: 2^k * p(r) with k = round(x / ln 2), r = x - k ln 2 in two parts (Cody-Waite) and the degree-7
** polynomial of Cephes' expf. k is rounded by adding 1.5 * 2^23 + 127, whose sum t then holds k + 127 (the biased
** exponent) in its low mantissa bits, so 2^k is built from the bits of t (no float-to-int conversion, no bias add):
** bits(t) << 23 (the shift drops t's own exponent and leading mantissa bit). x is first clamped to
** [-88, 88.72], which keeps k in [-127, 128]: k = -127 gives the bits of 0 (exp(x) = 0 below -87.68, a subnormal
** between -87.68 and -87.33), k = 128 those of inf (overflow from 88.38 on). The upper clamp is an integer min on
** the bits (positive floats order as their bits; negative ones are below it) and NaN is passed through at the end:
** two float clamps made GCC compare x against both bounds and blend constants into the result (9 vector operations
** for the clamps; now 5). The same bits as the two clamps, and as the form with a separate bias add, for every
** input (both checked over all 2^32 floats). Max relative error 1.2e-7 over the normal range (measured against
** double exp). About 20 vector operations per 8 or 16 values, with FMA where the clone has it (fp-contract above). */
static inline float rl_exp(float x) {
  float xc = x < -88.0f ? -88.0f : x;
  int32_t xb;
  memcpy(&xb, &xc, sizeof xb);
  xb = xb < 0x42b170a4 ? xb : 0x42b170a4; /* the bits of 88.72f */
  memcpy(&xc, &xb, sizeof xc);
  float t = xc * 1.44269504088896341f + 12583039.0f; /* 1.5 * 2^23 + 127 */
  float k = t - 12583039.0f;
  float r = xc - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.0f);
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  uint32_t bits = tb << 23;
  float s;
  memcpy(&s, &bits, sizeof s);
  float y = p * s;
  return x == x ? y : x;
}
#endif

/* log for loops over rows or columns (vectorises: no libm call): Cephes' logf, m 2^e with m in [sqrt(1/2), sqrt(2)),
** log(1 + (m - 1)) by its degree-9 polynomial. Max relative error 8e-8 over normal floats (measured against
** double log); 0 gives -inf, inf gives inf, negatives and NaN give NaN. Subnormal inputs are not supported (these
** are sums of exps with their maximum term 1, or column sums of a plan). The double build uses libm. */
#ifdef RL_DOUBLE
static inline real rl_logv(real x) { return log(x); }
#else
static inline float rl_logv(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  float e = (float)((int32_t)((bits >> 23) & 0xff) - 126);
  uint32_t mb = (bits & 0x807fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
  float m;
  memcpy(&m, &mb, sizeof m);
  int lo = m < 0.707106781186547524f;
  e = lo ? e - 1.0f : e;
  m = lo ? m + m - 1.0f : m - 1.0f;
  float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  float v = m + y + e * 0.693359375f;
  v = x == 0 ? -INFINITY : v;
  v = x == INFINITY ? INFINITY : v;
  v = x < 0 || x != x ? NAN : v;
  return v;
}
#endif

/* log of a per-row / per-column sum (not per element): libm in the type of `real`. */
#ifdef RL_DOUBLE
static inline real rl_log(real x) { return log(x); }
#else
static inline real rl_log(real x) { return logf(x); }
#endif

/* 1 if every value is finite: x * 0 is NaN exactly for inf and NaN, and the sum vectorises. */
RL_HOT static inline int rl_all_finite(int64_t n, const real *x) {
  real acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; i++) acc += x[i] * 0;
  return acc == 0;
}

/* max_j (a f_j + u_j) (u may be NULL) over one row. GCC does not vectorise a float max reduction written as
** `omp simd reduction(max)` here (it emits a scalar vmaxss chain), so the row is folded into 16 lanes by hand. */
#define RL_MAX_LANES 16
static inline real rl_rowmax(int64_t d, const real *f, real a, const real *u) {
  real mm[RL_MAX_LANES];
  for (int k = 0; k < RL_MAX_LANES; k++) mm[k] = -INFINITY;
  int64_t j = 0;
  if (u) {
    for (; j + RL_MAX_LANES <= d; j += RL_MAX_LANES)
#pragma omp simd
      for (int k = 0; k < RL_MAX_LANES; k++) {
        real y = a * f[j + k] + u[j + k];
        mm[k] = y > mm[k] ? y : mm[k];
      }
  } else {
    for (; j + RL_MAX_LANES <= d; j += RL_MAX_LANES)
#pragma omp simd
      for (int k = 0; k < RL_MAX_LANES; k++) {
        real y = a * f[j + k];
        mm[k] = y > mm[k] ? y : mm[k];
      }
  }
  real m = -INFINITY;
  for (; j < d; j++) {
    real y = a * f[j] + (u ? u[j] : 0);
    m = y > m ? y : m;
  }
  for (int k = 0; k < RL_MAX_LANES; k++) m = mm[k] > m ? mm[k] : m;
  return m;
}

/* sum_j x_j over one row, folded into 16 lanes (vectorises where GCC leaves an omp simd sum scalar). */
static inline real rl_rowsum(int64_t d, const real *x) {
  real mm[RL_MAX_LANES];
  for (int k = 0; k < RL_MAX_LANES; k++) mm[k] = 0;
  int64_t j = 0;
  for (; j + RL_MAX_LANES <= d; j += RL_MAX_LANES)
#pragma omp simd
    for (int k = 0; k < RL_MAX_LANES; k++) mm[k] += x[j + k];
  real s = 0;
  for (; j < d; j++) s += x[j];
  for (int k = 0; k < RL_MAX_LANES; k++) s += mm[k];
  return s;
}

/* Row loops in chunks of RL_LANES: RL_ROW_LOOP(d, body) runs body with int64_t j (the column) and int ln (its lane,
** for per-lane accumulators acc[ln]) over whole chunks and then over the d % RL_LANES remaining columns (lanes 0..
** of one more, shorter loop that GCC vectorises at half width). 8 lanes, one AVX2 register: with 16, GCC keeps a
** two-trip inner loop per chunk on AVX2 and its per-lane accumulators on the stack (BADMM f+b 10-15% slower,
** Sinkhorn 20%); AVX-512 runs the chunks at half width. An earlier form ran the remainder as a last whole chunk
** shifted back to end at d, with its already-done lanes masked: on AVX2 its guarded stores became
** vmaskmovps, which is slow on AMD (a row of 100 updated in place cost 25% more than one of 96). */
#define RL_LANES 8
#define RL_ROW_LOOP(d, ...)                                                                                     \
  do {                                                                                                         \
    int64_t rl_d_ = (d), rl_dm_ = rl_d_ - rl_d_ % RL_LANES;                                                   \
    for (int64_t rl_b_ = 0; rl_b_ < rl_dm_; rl_b_ += RL_LANES) {                                               \
      _Pragma("omp simd") for (int ln = 0; ln < RL_LANES; ln++) {                                              \
        int64_t j = rl_b_ + ln;                                                                                \
        __VA_ARGS__                                                                                            \
      }                                                                                                        \
    }                                                                                                          \
    _Pragma("omp simd") for (int ln = 0; ln < (int)(rl_d_ - rl_dm_); ln++) {                                   \
      int64_t j = rl_dm_ + ln;                                                                                 \
      __VA_ARGS__                                                                                              \
    }                                                                                                          \
  } while (0)

/* Per-lane accumulators of RL_ROW_LOOP and their reductions. */
static inline void rl_lanes_fill(real *a, real v) {
  for (int l = 0; l < RL_LANES; l++) a[l] = v;
}
/* Tree reductions, written out for 8 lanes (a serial fold is an 8-deep dependency chain per row, and GCC -O2 keeps a
** generic tree as scalar loops: 10% of the BADMM forward). */
_Static_assert(RL_LANES == 8, "rl_lanes_sum / rl_lanes_max are written for 8 lanes");
static inline real rl_lanes_sum(const real *a) {
  real b0 = a[0] + a[4], b1 = a[1] + a[5], b2 = a[2] + a[6], b3 = a[3] + a[7];
  return (b0 + b2) + (b1 + b3);
}
static inline real rl_max2(real x, real y) { return x > y ? x : y; }
static inline real rl_lanes_max(const real *a) {
  real b0 = rl_max2(a[0], a[4]), b1 = rl_max2(a[1], a[5]), b2 = rl_max2(a[2], a[6]), b3 = rl_max2(a[3], a[7]);
  return rl_max2(rl_max2(b0, b2), rl_max2(b1, b3));
}
/* acc[l] += w a[l] in double: per-row float lane sums folded into a set-wide double accumulator. */
static inline void rl_lanes_fold(double *acc, const real *a, double w) {
  for (int l = 0; l < RL_LANES; l++) acc[l] += w * a[l];
}
static inline double rl_lanes_dsum(const double *a) {
  double s = 0;
  for (int l = 0; l < RL_LANES; l++) s += a[l];
  return s;
}

/* PyTorch's softplus (beta 1, threshold 20) and its derivative. */
static inline double rl_softplus(double r) { return r > 20 ? r : log1p(exp(r)); }
static inline double rl_softplus_grad(double r) { return r > 20 ? 1 : 1 / (1 + exp(-r)); }
/* Inverse of softplus for v > 0 (used for initial values given as effective values). */
static inline double rl_softplus_inv(double v) { return v > 20 ? v : log(expm1(v)); }

/* log(exp(a) + exp(b)) without overflow. */
static inline double rl_logaddexp(double a, double b) {
  double m = a > b ? a : b;
  if (m == -INFINITY) return -INFINITY;
  return m + log1p(exp(-fabs(a - b)));
}

#endif
