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

/* dL/dlogP = D g x P, dL/dx = D g P (gx NULL: not wanted) */
RL_HOT void rotp_pool_ref_backward(int64_t n, int64_t d, const real *x, const real *P, const real *g, real *glog,
                                     real *gx) {
  for (int64_t i = 0; i < n; i++) {
    const real *xi = x + i * d, *pi = P + i * d;
    real *gl = glog + i * d, *gxi = gx ? gx + i * d : NULL;
    if (gxi)
#pragma omp simd
      for (int64_t j = 0; j < d; j++) {
        gxi[j] = (real)d * g[j] * pi[j];
        gl[j] = gxi[j] * xi[j];
      }
    else
#pragma omp simd
      for (int64_t j = 0; j < d; j++) gl[j] = (real)d * g[j] * pi[j] * xi[j];
  }
}

/* Eq. 5 is a column softmax of log P: f_d = sum_n x_nd a_nd, a_nd = exp(lP_nd - lden_d), lden_d = log sum_n P_nd
** (kept for the backward). While every column sum of the plan lies in [e^ROTP_EQ5_PLAN_MIN, e^ROTP_EQ5_PLAN_MAX],
** a = P / den from the plan itself: entries that underflowed to 0 in P weigh below e^-37 relative to their column,
** none overflowed, and no exp is needed. Otherwise (a column that underflows or overflows in float) the log-domain
** form keeps it defined. den: d scratch. */
#define ROTP_EQ5_PLAN_MIN (-50.0)
#define ROTP_EQ5_PLAN_MAX 80.0

RL_HOT void rotp_pool_eq5_forward(int64_t n, int64_t d, const real *x, const real *P, const real *LP, real *f,
                                  real *lden, real *den) {
  for (int64_t j = 0; j < d; j++) {
    f[j] = 0;
    den[j] = 0;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *p = P + i * d, *xi = x + i * d;
    RL_ROW_LOOP(d, {
      f[j] += xi[j] * p[j];
      den[j] += p[j];
    });
  }
  int plan_ok = 1;
  for (int64_t j = 0; j < d; j++)
    plan_ok &= den[j] >= (real)exp(ROTP_EQ5_PLAN_MIN) && den[j] <= (real)exp(ROTP_EQ5_PLAN_MAX);
  if (plan_ok) {
    for (int64_t j = 0; j < d; j++) {
      f[j] /= den[j];
      lden[j] = rl_log(den[j]);
    }
    return;
  }
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

/* a = softmax_n(log P): dL/dlogP_nd = g_d a_nd (x_nd - f_d), dL/dx_nd = g_d a_nd (gx NULL: not wanted), in one pass
** with f the forward's output. The plan path of the forward is taken again when every lden_d is in
** [ROTP_EQ5_PLAN_MIN, ROTP_EQ5_PLAN_MAX] (a = P exp(-lden)). gs: d scratch. */
RL_HOT void rotp_pool_eq5_backward(int64_t n, int64_t d, const real *x, const real *P, const real *LP, const real *g,
                                   const real *lden, const real *f, real *gs, real *glog, real *gx) {
  int plan_ok = 1;
  for (int64_t j = 0; j < d; j++) plan_ok &= lden[j] >= (real)ROTP_EQ5_PLAN_MIN && lden[j] <= (real)ROTP_EQ5_PLAN_MAX;
  if (plan_ok) {
#pragma omp simd
    for (int64_t j = 0; j < d; j++) gs[j] = g[j] * rl_exp(-lden[j]); /* g / den */
    for (int64_t i = 0; i < n; i++) {
      const real *p = P + i * d, *xi = x + i * d;
      real *gl = glog + i * d;
      if (gx) {
        real *gxi = gx + i * d;
        RL_ROW_LOOP(d, {
          real ga = p[j] * gs[j];
          gl[j] = ga * (xi[j] - f[j]);
          gxi[j] = ga;
        });
      } else {
        RL_ROW_LOOP(d, { gl[j] = p[j] * gs[j] * (xi[j] - f[j]); });
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    const real *l = LP + i * d, *xi = x + i * d;
    real *gl = glog + i * d, *gxi = gx ? gx + i * d : NULL;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      real ga = g[j] * rl_exp(l[j] - lden[j]); /* g a */
      gl[j] = ga * (xi[j] - f[j]);
      if (gxi) gxi[j] = ga;
    }
  }
}
