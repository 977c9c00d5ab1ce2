/*
** rotp_implicit.c -- implicit differentiation of the unbalanced Sinkhorn solver (alpha0 = 0, default update) at
** its fixed point: memory O(N D) for the set, independent of the number of iterations T.
**
** With e = a1, r2 = a2/(a2+e), r3 = a3/(a3+e) of the LAST iteration (the fixed point depends on those only, so
** only their entries receive gradient), the fixed point (u, v) solves
**   F1 = u - r2 (lp0 - A(v)) = 0,  A_d = lse_n(x_nd/e + v_n)      S1[n,d] = exp(x_nd/e + v_n - A_d)
**   F2 = v - r3 (lq0 - B(u)) = 0,  B_n = lse_d(x_nd/e + u_d)      S2[n,d] = exp(x_nd/e + u_d - B_n)
** and P = exp(x/e + u + v). For L with g_Z = dL/dP .* P, g_u = colsum g_Z, g_v = rowsum g_Z, the adjoint
** (lu, lv) solves J^T (lu, lv) = (g_u, g_v) with J = [[I, r2 S1^T], [r3 S2, I]]. Eliminating lv gives the D x D
** linear system (the Schur complement)
**   (I - r2 r3 S2^T S1) lu = g_u - r3 S2^T g_v,      lv = g_v - r2 S1 lu,
** solved by LU factorisation with partial pivoting (D^3 / 3 flops; the matrix is I minus r2 r3 times a
** column-stochastic matrix, so it is non-singular for r2 r3 < 1). Then
**   dL/dx_nd = (g_Z - r2 lu_d S1 - r3 lv_n S2) / e,   dL/dlp0 = r2 lu,   dL/dlq0 = r3 lv,
**   dL/dr2 = <lu, lp0 - A>,   dL/dr3 = <lv, lq0 - B>,   dL/d(1/e) = e <dL/dx, x>.
*/
#include <math.h>
#include <string.h>

#include "../blas.h"
#include "rotp_math.h"
#include "rotp_solver.h"

size_t rotp_implicit_trace_size(int64_t n, int64_t d) { return (size_t)(n + d); }

size_t rotp_implicit_work_size(int64_t n, int64_t d) { return (size_t)(2 * n * d + d * d + 6 * (n + d)); }

/* Solves A z = b in place (A d x d row-major, destroyed; b overwritten by z). piv: d scratch. */
static void lu_solve(int64_t d, real *A, real *b, real *piv) {
  for (int64_t k = 0; k < d; k++) {
    int64_t p = k;
    for (int64_t i = k + 1; i < d; i++)
      if (fabs(A[i * d + k]) > fabs(A[p * d + k])) p = i;
    piv[k] = (real)p;
    if (p != k) {
      for (int64_t j = 0; j < d; j++) {
        real t = A[k * d + j];
        A[k * d + j] = A[p * d + j];
        A[p * d + j] = t;
      }
      real t = b[k];
      b[k] = b[p];
      b[p] = t;
    }
    real akk = A[k * d + k];
    if (akk == 0) continue; /* singular: leave the component (cannot happen for r2 r3 < 1) */
    for (int64_t i = k + 1; i < d; i++) {
      real f = A[i * d + k] / akk;
      if (f == 0) continue;
      for (int64_t j = k + 1; j < d; j++) A[i * d + j] -= f * A[k * d + j];
      b[i] -= f * b[k];
    }
  }
  for (int64_t k = d - 1; k >= 0; k--) {
    double acc = b[k];
    for (int64_t j = k + 1; j < d; j++) acc -= (double)A[k * d + j] * b[j];
    b[k] = A[k * d + k] != 0 ? (real)(acc / A[k * d + k]) : 0;
  }
}

RL_HOT void rotp_implicit_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g) {
  int64_t n = s->n, d = s->d, T = o->iters;
  const rotp_step *st = &o->steps[T - 1];
  real e = st->a1, ie = 1 / e, r2 = st->a2 / (st->a2 + e), r3 = st->a3 / (st->a3 + e);
  const real *v = s->trace, *u = s->trace + n, *x = s->x;
  real *S1 = s->work, *S2 = S1 + n * d, *K = S2 + n * d, *A = K + d * d, *B = A + d, *gu = B + n, *gv = gu + d,
       *lu = gv + n, *lv = lu + d, *piv = lv + n;
  /* A, B at the fixed point and the two softmaxes */
  for (int64_t j = 0; j < d; j++) {
    double m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = fmax(m, x[i * d + j] * ie + v[i]);
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += exp(x[i * d + j] * ie + v[i] - m);
    A[j] = (real)(m + log(acc));
  }
  for (int64_t i = 0; i < n; i++) {
    double m = -INFINITY;
    for (int64_t j = 0; j < d; j++) m = fmax(m, x[i * d + j] * ie + u[j]);
    double acc = 0;
    for (int64_t j = 0; j < d; j++) acc += exp(x[i * d + j] * ie + u[j] - m);
    B[i] = (real)(m + log(acc));
  }
  memset(gu, 0, (size_t)d * sizeof(real));
  for (int64_t i = 0; i < n; i++) {
    real rs = 0;
    for (int64_t j = 0; j < d; j++) {
      real z = x[i * d + j] * ie;
      S1[i * d + j] = rl_exp(z + v[i] - A[j]);
      S2[i * d + j] = rl_exp(z + u[j] - B[i]);
      real gz = g->glog[i * d + j];
      gu[j] += gz;
      rs += gz;
    }
    gv[i] = rs;
  }
  /* (I - r2 r3 S2^T S1) lu = gu - r3 S2^T gv */
  rl_gemm(1, 0, d, d, n, -r2 * r3, S2, d, S1, d, 0, K, d);
  for (int64_t j = 0; j < d; j++) K[j * d + j] += 1;
  rl_gemv(1, n, d, -r3, S2, d, gv, 0, lu);
  for (int64_t j = 0; j < d; j++) lu[j] += gu[j];
  lu_solve(d, K, lu, piv);
  /* lv = gv - r2 S1 lu */
  rl_gemv(0, n, d, -r2, S1, d, lu, 0, lv);
  for (int64_t i = 0; i < n; i++) lv[i] += gv[i];
  double gr2 = 0, gr3 = 0, gie = 0;
  for (int64_t j = 0; j < d; j++) {
    g->glp0[j] += r2 * lu[j];
    gr2 += (double)lu[j] * (s->lp0[j] - A[j]);
  }
  for (int64_t i = 0; i < n; i++) {
    g->glq0[i] += r3 * lv[i];
    gr3 += (double)lv[i] * (s->lq0[i] - B[i]);
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) {
      real gz = g->glog[i * d + j];
      real gxe = gz - r2 * lu[j] * S1[i * d + j] - r3 * lv[i] * S2[i * d + j];
      if (g->gx) g->gx[i * d + j] += gxe * ie;
      gie += (double)gxe * x[i * d + j];
    }
  double a2 = st->a2, a3 = st->a3, d2 = (a2 + e) * (a2 + e), d3 = (a3 + e) * (a3 + e);
  double *gs = g->gstep + (T - 1) * RL_ROTP_NALPHA;
  gs[ROTP_G_A1] += -gie / ((double)e * e) - gr2 * a2 / d2 - gr3 * a3 / d3;
  gs[ROTP_G_A2] += gr2 * e / d2;
  gs[ROTP_G_A3] += gr3 * e / d3;
}
