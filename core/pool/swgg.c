/*
** swgg.c -- quantile interpolation U, and the hard and soft SWGG of one set on one slice (see swgg.h).
*/
#include <float.h>
#include <string.h>

#include "swgg.h"

#define SWGG_ALIGN 64

static size_t align_up(size_t x) { return (x + SWGG_ALIGN - 1) & ~(size_t)(SWGG_ALIGN - 1); }

/* ------------------------------------------------------------------------------------------------ interpolation */

void rl_interp_build(rl_interp *U, int64_t n, int64_t m, int compat) {
  U->n = n;
  U->m = m;
  if (n == m) {
    for (int64_t j = 0; j < m; j++) {
      U->lo[j] = (int32_t)j;
      U->w[j] = 0;
    }
    return;
  }
  /* the authors' slope (x[i+1] - x[i]) / (eps_mach + u[i+1] - u[i]), eps_mach of the working type */
  double eps_mach = sizeof(real) == sizeof(float) ? (double)FLT_EPSILON : DBL_EPSILON;
  for (int64_t j = 0; j < m; j++) {
    int64_t K = (j + 1) * (n + 1);           /* u_i < v_j  <=>  (i+1)(m+1) < (j+1)(n+1) */
    int64_t count = (K - 1) / (m + 1);
    if (count > n) count = n;
    int64_t lo = count - 1;
    if (lo < 0) lo = 0;
    if (lo > n - 2) lo = n - 2;
    double w;
    if (compat)
      w = ((double)(j + 1) / (double)(m + 1) - (double)(lo + 1) / (double)(n + 1)) / (eps_mach + 1.0 / (double)(n + 1));
    else
      w = (double)K / (double)(m + 1) - (double)(lo + 1);
    U->lo[j] = (int32_t)lo;
    U->w[j] = (real)w;
  }
}

void rl_interp_apply(const rl_interp *U, int rev, int64_t c, const real *X, int64_t ldx, real *Y, int64_t ldy) {
  int64_t n = U->n, m = U->m;
  for (int64_t j = 0; j < m; j++) {
    real *y = Y + j * ldy;
    if (n == m) {
      memcpy(y, X + j * ldx, (size_t)c * sizeof(real));
      continue;
    }
    int64_t jj = rev ? m - 1 - j : j, a = U->lo[jj], b = a + 1;
    if (rev) {
      a = n - 1 - a;
      b = n - 1 - b;
    }
    const real *xa = X + a * ldx, *xb = X + b * ldx;
    real w = U->w[jj], v = 1 - w;
    for (int64_t k = 0; k < c; k++) y[k] = v * xa[k] + w * xb[k];
  }
}

void rl_interp_apply_t(const rl_interp *U, int rev, int64_t c, const real *Y, int64_t ldy, real *X, int64_t ldx) {
  int64_t n = U->n, m = U->m;
  for (int64_t j = 0; j < m; j++) {
    const real *y = Y + j * ldy;
    if (n == m) {
      real *x = X + j * ldx;
      for (int64_t k = 0; k < c; k++) x[k] += y[k];
      continue;
    }
    int64_t jj = rev ? m - 1 - j : j, a = U->lo[jj], b = a + 1;
    if (rev) {
      a = n - 1 - a;
      b = n - 1 - b;
    }
    real *xa = X + a * ldx, *xb = X + b * ldx;
    real w = U->w[jj], v = 1 - w;
    for (int64_t k = 0; k < c; k++) {
      xa[k] += v * y[k];
      xb[k] += w * y[k];
    }
  }
}

/* ------------------------------------------------------------------------------------------------ hard */

static double sqdist(const real *a, const real *b, int64_t d) {
  double s = 0;
  for (int64_t k = 0; k < d; k++) {
    double t = (double)a[k] - (double)b[k];
    s += t * t;
  }
  return s;
}

double rl_swgg_hard(const rl_interp *U, int64_t d, const real *X, int64_t ldx, const int32_t *xorder, const real *R,
                    const int32_t *rorder) {
  int64_t n = U->n, m = U->m;
  double cost = 0;
  for (int64_t j = 0; j < m; j++) {
    const real *r = R + (int64_t)rorder[j] * d;
    if (n == m) {
      cost += sqdist(X + (int64_t)xorder[j] * ldx, r, d);
    } else {
      int64_t a = U->lo[j];
      double w = (double)U->w[j];
      cost += (1 - w) * sqdist(X + (int64_t)xorder[a] * ldx, r, d) + w * sqdist(X + (int64_t)xorder[a + 1] * ldx, r, d);
    }
  }
  return cost / (double)m;
}

/* ------------------------------------------------------------------------------------------------ soft */

size_t rl_swgg_soft_bytes(int64_t n, int64_t m, int64_t c) {
  return align_up(rl_softperm_bytes(n, c)) + 2 * align_up((size_t)(n * c) * sizeof(real)) +
         align_up((size_t)(m * c) * sizeof(real));
}

void rl_swgg_soft_init(rl_swgg_soft *w, int method, double temperature, int64_t n, int64_t m, int64_t c, void *mem) {
  char *p = mem;
  rl_softperm_init(&w->px, method, temperature, 0, n, c, p);
  p += align_up(rl_softperm_bytes(n, c));
  w->pxt = (real *)p;
  p += align_up((size_t)(n * c) * sizeof(real));
  w->z = (real *)p;
  p += align_up((size_t)(n * c) * sizeof(real));
  w->upx = (real *)p;
  w->n = w->m = w->c = 0;
  w->rev = method == RL_SOFT_LAPSUM;
}

double rl_swgg_soft_cost(rl_swgg_soft *w, const rl_interp *U, const real *s, int64_t sstride, const int32_t *xorder,
                         const real *Xt, int64_t ldx, const real *PR) {
  int64_t n = U->n, m = U->m, c = w->px.cap_c;
  w->n = n;
  w->m = m;
  w->c = c;
  rl_softperm_prepare(&w->px, n, s, sstride, xorder);
  rl_softperm_apply(&w->px, c, Xt, ldx, w->pxt, c);
  const real *upx = w->pxt;
  if (n != m) {
    rl_interp_apply(U, w->rev, c, w->pxt, c, w->upx, c);
    upx = w->upx;
  }
  double cost = 0;
  for (int64_t i = 0; i < m * c; i++) cost += (double)upx[i] * (double)PR[i];
  return cost / (double)m;
}

void rl_swgg_soft_grad(rl_swgg_soft *w, const rl_interp *U, const real *Xt, int64_t ldx, const real *PR, real coef,
                       real *gs, int64_t gstride, real *gXt, int64_t ldg, real *Y) {
  int64_t n = w->n, m = w->m, c = w->c;
  real scale = coef / (real)m;
  const real *z = PR, *upx = w->pxt;
  if (n != m) {
    memset(w->z, 0, (size_t)(n * c) * sizeof(real));
    rl_interp_apply_t(U, w->rev, c, PR, c, w->z, c);
    z = w->z;
    upx = w->upx;
  }
  rl_softperm_backward(&w->px, Xt, ldx, z, c, scale, gs, gstride, gXt, ldg);
  for (int64_t i = 0; i < m * c; i++) Y[i] += scale * upx[i];
}
