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
  if (n == 1) { /* a single value is its own quantile function: every quantile equals it */
    for (int64_t j = 0; j < m; j++) {
      U->lo[j] = 0;
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
    int64_t jj = rev ? m - 1 - j : j, a = U->lo[jj], b = n > 1 ? a + 1 : a;
    if (rev) {
      a = n - 1 - a;
      b = n - 1 - b;
    }
    const real *xa = X + a * ldx, *xb = X + b * ldx;
    real w = U->w[jj], v = 1 - w;
#pragma omp simd
    for (int64_t k = 0; k < c; k++) y[k] = v * xa[k] + w * xb[k];
  }
}

void rl_interp_apply_t(const rl_interp *U, int rev, int64_t c, const real *Y, int64_t ldy, real *X, int64_t ldx) {
  int64_t n = U->n, m = U->m;
  for (int64_t j = 0; j < m; j++) {
    const real *y = Y + j * ldy;
    if (n == m) {
      real *x = X + j * ldx;
#pragma omp simd
      for (int64_t k = 0; k < c; k++) x[k] += y[k];
      continue;
    }
    int64_t jj = rev ? m - 1 - j : j, a = U->lo[jj], b = n > 1 ? a + 1 : a;
    if (rev) {
      a = n - 1 - a;
      b = n - 1 - b;
    }
    real *xa = X + a * ldx, *xb = X + b * ldx;
    real w = U->w[jj], v = 1 - w;
#pragma omp simd
    for (int64_t k = 0; k < c; k++) {
      xa[k] += v * y[k];
      xb[k] += w * y[k];
    }
  }
}

/* ------------------------------------------------------------------------------------------------ hard */

RL_KERNEL static double sqdist(const real *a, const real *b, int64_t d) {
  real s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < d; k++) {
    real t = a[k] - b[k];
    s += t * t;
  }
  return (double)s;
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
      int64_t b = n > 1 ? a + 1 : a;
      cost += (1 - w) * sqdist(X + (int64_t)xorder[a] * ldx, r, d) + w * sqdist(X + (int64_t)xorder[b] * ldx, r, d);
    }
  }
  return cost / (double)m;
}

/* ------------------------------------------------------------------------------------------------ soft */

/* y += a x over whole panels (AVX2 clone: this code is otherwise built for baseline x86-64). */
RL_KERNEL static void panel_axpy(int64_t count, real a, const real *x, real *y) {
#pragma omp simd
  for (int64_t i = 0; i < count; i++) y[i] += a * x[i];
}

void rl_swgg_panels_apply(rl_softperm *sp, int64_t nb, const real *A, int64_t as, real *PA, int64_t ps) {
  for (int64_t k = 0; k < nb; k++) {
    rl_softperm_io io = {0};
    io.X = A + k * as;
    io.ldx = RL_SOFTPERM_BLOCK;
    io.PX = PA + k * ps;
    io.ldp = RL_SOFTPERM_BLOCK;
    rl_softperm_block(sp, RL_SOFTPERM_BLOCK, &io);
  }
}

void rl_swgg_panels_backward(rl_softperm *sp, int64_t nb, const real *A, int64_t as, const real *G, int64_t gs,
                             real *grad_r, int64_t rstride, real *grad_A, int64_t gas) {
  rl_softperm_backward_begin(sp);
  for (int64_t k = 0; k < nb; k++) {
    rl_softperm_io io = {0};
    io.X = A + k * as;
    io.ldx = RL_SOFTPERM_BLOCK;
    io.G = G + k * gs;
    io.ldg = RL_SOFTPERM_BLOCK;
    io.scalars = 1;
    io.backward = 1;
    io.scale = 1;
    io.grad_X = grad_A + k * gas;
    io.ldgx = RL_SOFTPERM_BLOCK;
    rl_softperm_block(sp, RL_SOFTPERM_BLOCK, &io);
  }
  rl_softperm_backward_end(sp, 1, grad_r, rstride);
}

size_t rl_swgg_soft_bytes(int64_t n, int64_t m) {
  size_t cb = RL_SOFTPERM_BLOCK;
  return align_up(rl_softperm_bytes(n, cb)) + 2 * align_up((size_t)n * cb * sizeof(real)) +
         align_up((size_t)m * cb * sizeof(real));
}

void rl_swgg_soft_init(rl_swgg_soft *w, int method, double temperature, int64_t n, int64_t m, int64_t nb, void *mem) {
  char *p = mem;
  size_t cb = RL_SOFTPERM_BLOCK;
  rl_softperm_init(&w->px, method, temperature, 0, n, (int64_t)cb, p);
  p += align_up(rl_softperm_bytes(n, (int64_t)cb));
  w->pxt = (real *)p;
  p += align_up((size_t)n * cb * sizeof(real));
  w->z = (real *)p;
  p += align_up((size_t)n * cb * sizeof(real));
  w->upx = (real *)p;
  w->n = w->m = 0;
  w->nb = nb;
  w->rev = method == RL_SOFT_LAPSUM;
}

double rl_swgg_soft_cost(rl_swgg_soft *w, const rl_interp *U, const real *s, int64_t sstride, const int32_t *xorder,
                         const real *Xt, int64_t xs, const real *PR, int64_t rs, real *T, int64_t ts) {
  const int64_t n = U->n, m = U->m, B = RL_SOFTPERM_BLOCK;
  w->n = n;
  w->m = m;
  rl_softperm_prepare(&w->px, n, s, sstride, xorder);
  rl_softperm_backward_begin(&w->px);
  /* cost = <U P_x Xt, P_r Rt> / m = <Xt, P_x^T (U^T P_r Rt)> / m: the backward passes of P_x give the cost, the
  ** key-gradient partial sums and (kept in T) P_x^T U^T P_r Rt, the gradient w.r.t. Xt up to the scale */
  double cost = 0;
  for (int64_t k = 0; k < w->nb; k++) {
    rl_softperm_io io = {0};
    io.X = Xt + k * xs;
    io.ldx = B;
    io.G = PR + k * rs;
    io.ldg = B;
    if (n != m) {
      memset(w->z, 0, (size_t)(n * B) * sizeof(real));
      rl_interp_apply_t(U, w->rev, B, PR + k * rs, B, w->z, B);
      io.G = w->z;
    }
    io.backward = 1;
    io.tdot = &cost;
    if (T) {
      io.PtG = T + k * ts;
      io.ldt = B;
    }
    rl_softperm_block(&w->px, B, &io);
  }
  return cost / (double)m;
}

void rl_swgg_soft_grad(rl_swgg_soft *w, const rl_interp *U, const real *Xt, int64_t xs, const real *PR, int64_t rs,
                       const real *T, int64_t ts, real coef, real *gs, int64_t gstride, real *gXt, int64_t gxs, real *Y,
                       int64_t ys) {
  const int64_t n = w->n, m = w->m, B = RL_SOFTPERM_BLOCK;
  real scale = coef / (real)m;
  for (int64_t k = w->nb - 1; k >= 0; k--) { /* last panels first: they are the ones still in cache from the cost */
    rl_softperm_io io = {0};
    io.X = Xt + k * xs;
    io.ldx = B;
    io.scalars = 1;
    if (n == m) { /* upstream gradient P_r Rt; Y (gradient w.r.t. P_r Rt) += scale P_x Xt row by row */
      io.G = PR + k * rs;
      io.ldg = B;
      io.Y = Y + k * ys;
      io.ldy = B;
      io.yscale = scale;
      rl_softperm_block(&w->px, B, &io);
    } else { /* upstream U^T P_r Rt; Y += scale U P_x Xt */
      memset(w->z, 0, (size_t)(n * B) * sizeof(real));
      rl_interp_apply_t(U, w->rev, B, PR + k * rs, B, w->z, B);
      io.G = w->z;
      io.ldg = B;
      io.PX = w->pxt;
      io.ldp = B;
      rl_softperm_block(&w->px, B, &io);
      rl_interp_apply(U, w->rev, B, w->pxt, B, w->upx, B);
      panel_axpy(m * B, scale, w->upx, Y + k * ys);
    }
    panel_axpy(n * B, scale, T + k * ts, gXt + k * gxs); /* gXt += scale P_x^T U^T P_r Rt (kept by the cost) */
  }
  rl_softperm_backward_end(&w->px, scale, gs, gstride);
}
