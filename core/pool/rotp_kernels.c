/*
** rotp_kernels.c -- the shared kernels of the ROTP solvers: the structure (Gromov-Wasserstein) term through D x D
** products only, its reverse, row/column log-sum-exp of a materialised matrix, and the exp pass benchmarked by
** tests/bench/rotp.lua.
**
** Structure term. With c1 = G / s1 (G = X^T X, D x D) and c2 = K / s2 (K = X X^T, N x N, never formed):
**   M(t) = c2 t c1 = (1/s2) X ((X^T t) c1)                                  O(N D^2), memory O(N D)
** and for the term a0 M(t) with adjoint g = dL/d(a0 M):
**   dL/dt  = a0 c2 g c1 = (a0/s2) X ((X^T g) c1)                            (c1, c2 symmetric)
**   dL/dc1 = a0 (c2 t)^T g = (a0/s2) (X^T t)^T (X^T g)
**   dL/dX through c2 (dL/dc2 = a0 g (t c1)^T, dK = dc2/s2, dX = (dK + dK^T) X):
**          = (a0/s2) [ g (c1 (X^T t)^T) + t (c1 (X^T g)^T) ] = (a0/s2) [ g ((X^T t) c1)^T + t ((X^T g) c1)^T ]
**   <g, M(t)> = (1/s2) <X^T g, (X^T t) c1>                                  (for dL/da0 and the normalisers)
*/
#include <math.h>

#include "../blas.h"
#include "rotp_math.h"
#include "rotp_solver.h"

size_t rotp_struct_work_size(int64_t n, int64_t d, int debug) {
  return (size_t)(3 * d * d) + (debug ? (size_t)(n * d) : 0);
}

void rotp_struct_apply(const rotp_set *s, const real *t, real *M, real *tmp, real *keep) {
  int64_t n = s->n, d = s->d;
  real *Xt = keep ? keep : tmp, *W = Xt + d * d;
  rl_gemm(1, 0, d, d, n, 1, s->x, d, t, d, 0, Xt, d);             /* X^T t */
  rl_gemm(0, 0, d, d, d, 1, Xt, d, s->c1, d, 0, W, d);             /* (X^T t) c1 */
  rl_gemm(0, 0, n, d, d, s->inv_s2, s->x, d, W, d, 0, M, d);       /* X W / s2 */
}

double rotp_struct_backward(const rotp_set *s, const real *t, const real *g, real a0, real *gt, real *gxs, real *gc1,
                            real *gc2, real *tmp, const real *kept) {
  int64_t n = s->n, d = s->d;
  real *Xg = tmp + d * d, *W = tmp + 2 * d * d;
  real sc = a0 * s->inv_s2;
  const real *Xt = kept, *Wt = kept ? kept + d * d : W; /* X^T t, Wt = Xt c1: the forward's, or recomputed */
  if (!kept) {
    rl_gemm(1, 0, d, d, n, 1, s->x, d, t, d, 0, tmp, d);
    rl_gemm(0, 0, d, d, d, 1, tmp, d, s->c1, d, 0, W, d);
    Xt = tmp;
  }
  rl_gemm(1, 0, d, d, n, 1, s->x, d, g, d, 0, Xg, d); /* X^T g */
  /* <g, M> = <Xg, Wt> / s2 */
  double dot = 0;
  for (int64_t i = 0; i < d * d; i++) dot += (double)Xg[i] * Wt[i];
  dot *= s->inv_s2;
  if (gc2) { /* debug: dL/dc2 += a0 g (t c1)^T, with (t c1) in the extra n x d scratch */
    real *tc1 = tmp + 3 * d * d;
    rl_gemm(0, 0, n, d, d, 1, t, d, s->c1, d, 0, tc1, d);
    rl_gemm(0, 1, n, n, d, a0, g, d, tc1, d, 1, gc2, n);
  }
  if (a0 == 0) return dot;
  /* gxs += (a0/s2) g (c1 Xt^T) = (a0/s2) g Wt^T (c1 symmetric); gc1 += (a0/s2) Xt^T Xg */
  if (gxs) rl_gemm(0, 1, n, d, d, sc, g, d, Wt, d, 1, gxs, d);
  if (gc1) rl_gemm(1, 0, d, d, d, sc, Xt, d, Xg, d, 1, gc1, d);
  /* W = Xg c1 (Wt is used up): gt += (a0/s2) X W, gxs += (a0/s2) t (c1 Xg^T) = (a0/s2) t W^T */
  rl_gemm(0, 0, d, d, d, 1, Xg, d, s->c1, d, 0, W, d);
  rl_gemm(0, 0, n, d, d, sc, s->x, d, W, d, 1, gt, d);
  if (gxs) rl_gemm(0, 1, n, d, d, sc, t, d, W, d, 1, gxs, d);
  return dot;
}

RL_HOT void rotp_lse_rows(int64_t n, int64_t d, const real *Y, real *out) {
  for (int64_t i = 0; i < n; i++) {
    const real *y = Y + i * d;
    real m = rl_rowmax(d, y, 1, NULL);
    real acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < d; j++) acc += rl_exp(y[j] - m);
    out[i] = m + rl_log(acc);
  }
}

RL_HOT void rotp_lse_cols(int64_t n, int64_t d, const real *Y, real *out, real *cm, real *cs) {
  for (int64_t j = 0; j < d; j++) {
    cm[j] = -INFINITY;
    cs[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *y = Y + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) cm[j] = y[j] > cm[j] ? y[j] : cm[j];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *y = Y + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) cs[j] += rl_exp(y[j] - cm[j]);
  }
  for (int64_t j = 0; j < d; j++) out[j] = cm[j] + rl_log(cs[j]);
}

RL_HOT static void exp_chunk(int64_t n, const real *x, real *y) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] = rl_exp(x[i]);
}

void rl_rotp_exp_pass(int64_t n, const real *x, real *y) {
  int64_t chunk = 4096;
  int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nchunks; c++) {
    int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
    exp_chunk(hi - lo, x + lo, y + lo);
  }
}
