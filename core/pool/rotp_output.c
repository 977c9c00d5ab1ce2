/*
** rotp_output.c -- the pooled output of one set from its plan: "reference" f = D sum_n x_n .* P_n, and the paper's
** eq. 5 f_d = sum_n x_nd P_nd / sum_m P_md computed as a column softmax of log P (a plan column may underflow in
** float); with their reverses, which return dL/dlog P (what every solver's backward takes) and the direct dL/dx.
*/
#include <math.h>

#include "rotp_math.h"
#include "rotp_module.h"

/* ---------------------------------------------------------------- pooled output of one set */

/* f = D sum_n x_n .* P_n */
RL_HOT void rotp_pool_ref_forward(int64_t n, int64_t d, const real *x, const real *P, real *f) {
  for (int64_t j = 0; j < d; j++) f[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *pi = P + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) f[j] += xi[j] * pi[j];
  }
  for (int64_t j = 0; j < d; j++) f[j] *= (real)d;
}

/* dL/dlogP = D g x P, dL/dx = D g P */
RL_HOT void rotp_pool_ref_backward(int64_t n, int64_t d, const real *x, const real *P, const real *g, real *glog,
                                     real *gx) {
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *pi = P + i * d;
    real *gl = glog + i * d, *gxi = gx + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      gxi[j] = (real)d * g[j] * pi[j];
      gl[j] = gxi[j] * xi[j];
    }
  }
}

/* Eq. 5 as a column softmax of log P: f_d = sum_n x_nd exp(lP_nd - lden_d), lden_d = log sum_n P_nd (kept for the
** backward), so a column that underflows in float stays defined. den: d scratch. */
RL_HOT void rotp_pool_eq5_forward(int64_t n, int64_t d, const real *x, const real *LP, real *f, real *lden,
                                    real *den) {
  for (int64_t j = 0; j < d; j++) {
    lden[j] = -INFINITY;
    f[j] = 0;
    den[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) lden[j] = l[j] > lden[j] ? l[j] : lden[j];
  }
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d, *xi = x + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real w = rl_exp(l[j] - lden[j]);
      f[j] += xi[j] * w;
      den[j] += w;
    }
  }
  for (int64_t j = 0; j < d; j++) {
    f[j] /= den[j];
    lden[j] += (real)log(den[j]);
  }
}

/* a = softmax_n(log P): dL/dlogP_nd = g_d a_nd (x_nd - f_d), dL/dx_nd = g_d a_nd. f: d scratch. */
RL_HOT void rotp_pool_eq5_backward(int64_t n, int64_t d, const real *x, const real *LP, const real *g,
                                     const real *lden, real *glog, real *gx, real *f) {
  for (int64_t j = 0; j < d; j++) f[j] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d, *xi = x + i * d;
    real *gxi = gx + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      gxi[j] = rl_exp(l[j] - lden[j]); /* a */
      f[j] += gxi[j] * xi[j];
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d;
    real *gxi = gx + i * d, *gl = glog + i * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real ga = g[j] * gxi[j];
      gl[j] = ga * (xi[j] - f[j]);
      gxi[j] = ga;
    }
  }
}

