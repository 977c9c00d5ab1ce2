/*
** rotp_priors.c -- the inputs the ROTP solvers see besides x: the priors p0 (uniform or softmax(U sum_n x_n)) and q0
** (uniform or the attention softmax(w tanh(V x_n)) over the set, +1e-16 in its denominator), in the log domain
** (compat: log(q0 + 1e-8)), and the structure matrices c1 = G / s1 with the normaliser s2 of c2 = K / s2
** (G = X^T X, K = X X^T never formed; s per set, or batch-global with structure = "reference"); with their reverses.
*/
#include <math.h>
#include <string.h>

#include "../blas.h"
#include "rotp_math.h"
#include "rotp_module.h"

/* ---------------------------------------------------------------- priors */

/* q0 / lq0 of every row; p0 / lp0 of every set. */
int rotp_priors_forward(rotp_module *r, const rl_batch *in) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const real *X = in->values.data;
  int rc = 0;
  real *q0 = wsr(&r->w_q0, (size_t)R, &rc), *lq0 = wsr(&r->w_lq0, (size_t)R, &rc);
  real *p0 = wsr(&r->w_p0, (size_t)(B * D), &rc), *lp0 = wsr(&r->w_lp0, (size_t)(B * D), &rc);
  if (rc) return rc;
  const int64_t *off = in->offsets[0];
  real *H = NULL;
  int64_t Hd = c->q0_hidden;
  if (c->q0_learn) {
    H = wsr(&r->w_H, (size_t)(R * (Hd + 1)), &rc);
    if (rc) return rc;
    const rl_param *V = &r->base.params[r->iV], *w = &r->base.params[r->iw];
    rl_gemm(0, 1, R, Hd, D, 1, X, D, V->value.data, D, 0, H, Hd); /* X V^T */
    for (int64_t i = 0; i < R * Hd; i++) H[i] = (real)tanh(H[i]);
    real *sc = H + R * Hd;
    rl_gemv(0, R, Hd, 1, H, Hd, w->value.data, 0, sc);
  }
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    if (c->q0_learn) {
      const real *sc = H + R * Hd + off[b];
      double m = -INFINITY, S = 0;
      for (int64_t i = 0; i < n; i++) m = sc[i] > m ? sc[i] : m;
      for (int64_t i = 0; i < n; i++) S += exp(sc[i] - m);
      double lS = log(S + RL_SOFTMAX_EPS);
      for (int64_t i = 0; i < n; i++) {
        double q = exp(sc[i] - m) / (S + RL_SOFTMAX_EPS);
        q0[off[b] + i] = (real)q;
        lq0[off[b] + i] = (real)(c->compat ? log(q + ROTP_REF_EPS) : sc[i] - m - lS);
      }
    } else if (c->q0_n) { /* a given prior, normalised */
      if (n != c->q0_n)
        return rl_fail(RL_EINVAL, "rotp: set %lld has %lld rows, but the fixed prior q0 has %lld entries", (long long)b + 1,
                       (long long)n, (long long)c->q0_n);
      double S = 0;
      for (int64_t i = 0; i < n; i++) S += c->q0_fixed[i];
      for (int64_t i = 0; i < n; i++) {
        double q = c->q0_fixed[i] / S;
        q0[off[b] + i] = (real)q;
        lq0[off[b] + i] = (real)(c->compat ? log(q + ROTP_REF_EPS) : log(q));
      }
    } else {
      double q = 1.0 / ((double)n + RL_SOFTMAX_EPS);
      for (int64_t i = 0; i < n; i++) {
        q0[off[b] + i] = (real)q;
        lq0[off[b] + i] = (real)(c->compat ? log(q + ROTP_REF_EPS) : -log((double)n));
      }
    }
  }
  if (c->p0_learn) {
    real *xs = wsr(&r->w_xsum, (size_t)(B * D), &rc);
    if (rc) return rc;
    const rl_param *U = &r->base.params[r->iU];
    for (int64_t b = 0; b < B; b++) {
      real *s = xs + b * D;
      memset(s, 0, (size_t)D * sizeof(real));
      for (int64_t i = off[b]; i < off[b + 1]; i++)
        for (int64_t j = 0; j < D; j++) s[j] += X[i * D + j];
    }
    rl_gemm(0, 1, B, D, D, 1, xs, D, U->value.data, D, 0, lp0, D); /* logits = xsum U^T */
    for (int64_t b = 0; b < B; b++) {
      real *l = lp0 + b * D;
      double m = -INFINITY, S = 0;
      for (int64_t j = 0; j < D; j++) m = l[j] > m ? l[j] : m;
      for (int64_t j = 0; j < D; j++) S += exp(l[j] - m);
      double lS = m + log(S);
      for (int64_t j = 0; j < D; j++) {
        l[j] = (real)(l[j] - lS);
        p0[b * D + j] = (real)exp(l[j]);
      }
    }
  } else {
    for (int64_t i = 0; i < B * D; i++) {
      p0[i] = (real)(1.0 / (double)D);
      lp0[i] = (real)(-log((double)D));
    }
  }
  return RL_OK;
}

/* Reverse of the priors: gradients w.r.t. lq0 (+ plain q0) and lp0 (+ plain p0) to x and the prior params. */
void rotp_priors_backward(rotp_module *r, const rl_batch *in, real *gx) {
  const rl_rotp_config *c = &r->cfg;
  int64_t D = c->dim, B = in->count[0], R = rl_rows(&in->values);
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  real *q0 = r->w_q0.data, *glq0 = r->w_glq0.data, *gq0 = r->w_gq0.data;
  real *p0 = r->w_p0.data, *glp0 = r->w_glp0.data, *gp0 = r->w_gp0.data;
  if (c->q0_learn) {
    int64_t Hd = c->q0_hidden;
    real *H = r->w_H.data;
    rl_param *V = &r->base.params[r->iV], *w = &r->base.params[r->iw];
    /* ds (score gradient) into gq0 */
    for (int64_t b = 0; b < B; b++) {
      double acc = 0;
      for (int64_t i = off[b]; i < off[b + 1]; i++) {
        double gq = c->compat ? glq0[i] / (q0[i] + ROTP_REF_EPS) + gq0[i] : gq0[i];
        gq0[i] = (real)gq;
        acc += c->compat ? q0[i] * gq : glq0[i] + q0[i] * gq;
      }
      for (int64_t i = off[b]; i < off[b + 1]; i++) {
        /* compat: q through softmax; default: lq0 = s - log S (+ any plain-q0 path through q = exp(lq0)) */
        double ds = c->compat ? q0[i] * (gq0[i] - acc) : glq0[i] + q0[i] * gq0[i] - q0[i] * acc;
        gq0[i] = (real)ds;
      }
    }
    /* w.grad += ds^T H; dpre = ds w (1 - H^2); V.grad += dpre^T X; gx += dpre V */
    rl_gemv(1, R, Hd, 1, H, Hd, gq0, 1, w->grad.data);
    for (int64_t i = 0; i < R; i++)
      for (int64_t h = 0; h < Hd; h++) {
        real hv = H[i * Hd + h];
        H[i * Hd + h] = gq0[i] * w->value.data[h] * (1 - hv * hv); /* H is recomputed at the next forward */
      }
    rl_gemm(1, 0, Hd, D, R, 1, H, Hd, X, D, 1, V->grad.data, D);
    if (gx) rl_gemm(0, 0, R, D, Hd, 1, H, Hd, V->value.data, D, 1, gx, D);
  }
  if (c->p0_learn) {
    rl_param *U = &r->base.params[r->iU];
    real *xs = r->w_xsum.data;
    real *gl = glp0; /* logits gradient in place */
    for (int64_t b = 0; b < B; b++) {
      real *g = gl + b * D, *p = p0 + b * D, *gp = gp0 + b * D;
      double sg = 0, spg = 0;
      for (int64_t j = 0; j < D; j++) {
        sg += g[j];
        spg += p[j] * gp[j];
      }
      for (int64_t j = 0; j < D; j++) g[j] = (real)(g[j] - p[j] * sg + p[j] * (gp[j] - spg));
    }
    rl_gemm(1, 0, D, D, B, 1, gl, D, xs, D, 1, U->grad.data, D); /* U.grad += glogits^T xsum */
    /* gxsum = glogits U, added to every row of the set */
    for (int64_t b = 0; b < B && gx; b++) {
      real *gxs = gp0 + b * D; /* reuse */
      rl_gemv(1, D, D, 1, U->value.data, D, gl + b * D, 0, gxs);
      for (int64_t i = off[b]; i < off[b + 1]; i++)
        for (int64_t j = 0; j < D; j++) gx[i * D + j] += gxs[j];
    }
  }
}

/* ---------------------------------------------------------------- structure matrices */

int rotp_structure_forward(rotp_module *r, const rl_batch *in) {
  int64_t D = r->cfg.dim, B = in->count[0];
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  int rc = 0;
  real *c1 = wsr(&r->w_c1, (size_t)(B * D * D), &rc);
  rotp_norm *nm = wsb(&r->w_s, (size_t)B * sizeof(rotp_norm), &rc);
  if (rc) return rc;
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    real *G = c1 + b * D * D;
    const real *xb = X + off[b] * D;
    rl_gemm(1, 0, D, D, n, 1, xb, D, xb, D, 0, G, D);
    rotp_norm *q = &nm[b];
    q->s1 = -INFINITY;
    q->s2 = -INFINITY;
    for (int64_t j = 0; j < D; j++)
      if (G[j * D + j] > q->s1) {
        q->s1 = G[j * D + j];
        q->col1 = j;
      }
    q->set1 = b;
    for (int64_t i = 0; i < n; i++) {
      double s = 0;
      for (int64_t j = 0; j < D; j++) s += (double)xb[i * D + j] * xb[i * D + j];
      if (s > q->s2) {
        q->s2 = s;
        q->row2 = off[b] + i;
      }
    }
  }
  if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
    rotp_norm g = nm[0];
    for (int64_t b = 1; b < B; b++) {
      if (nm[b].s1 > g.s1) {
        g.s1 = nm[b].s1;
        g.col1 = nm[b].col1;
        g.set1 = nm[b].set1;
      }
      if (nm[b].s2 > g.s2) {
        g.s2 = nm[b].s2;
        g.row2 = nm[b].row2;
      }
    }
    for (int64_t b = 0; b < B; b++) nm[b] = g;
  }
  for (int64_t b = 0; b < B; b++) {
    /* an all-zero set has G = 0: any normaliser gives c1 = 0 */
    if (!(nm[b].s1 > 0)) nm[b].s1 = 1;
    if (!(nm[b].s2 > 0)) nm[b].s2 = 1;
    real *G = c1 + b * D * D;
    real inv = (real)(1 / nm[b].s1);
    for (int64_t i = 0; i < D * D; i++) G[i] *= inv;
  }
  return RL_OK;
}

/* gxs += X (gc1 + gc1^T) / s1 per set, then the normalisers' gradients to their arg-max rows / columns. */
void rotp_structure_backward(rotp_module *r, const rl_batch *in, real *gxs) {
  int64_t D = r->cfg.dim, B = in->count[0];
  const real *X = in->values.data;
  const int64_t *off = in->offsets[0];
  real *c1 = r->w_c1.data, *gc1 = r->w_gc1.data;
  double *sdot = r->w_sdot.data;
  rotp_norm *nm = r->w_s.data;
  double gs1_global = 0, gs2_global = 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t n = off[b + 1] - off[b];
    real *gc = gc1 + b * D * D, *c = c1 + b * D * D;
    double dot = 0;
    for (int64_t i = 0; i < D * D; i++) dot += (double)gc[i] * c[i];
    double inv1 = 1 / nm[b].s1;
    /* symmetric part: dG = gc1 / s1, dX = X (dG + dG^T) */
    rl_gemm(0, 0, n, D, D, (real)inv1, X + off[b] * D, D, gc, D, 1, gxs + off[b] * D, D);
    rl_gemm(0, 1, n, D, D, (real)inv1, X + off[b] * D, D, gc, D, 1, gxs + off[b] * D, D);
    double gs1 = -dot * inv1, gs2 = -sdot[b] / nm[b].s2;
    if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
      gs1_global += gs1;
      gs2_global += gs2;
    } else {
      /* s1 = sum_n x_{n,col1}^2 over this set, s2 = |x_row2|^2 */
      int64_t j = nm[b].col1;
      for (int64_t i = off[b]; i < off[b + 1]; i++) gxs[i * D + j] += (real)(2 * gs1 * X[i * D + j]);
      int64_t i2 = nm[b].row2;
      for (int64_t jj = 0; jj < D; jj++) gxs[i2 * D + jj] += (real)(2 * gs2 * X[i2 * D + jj]);
    }
  }
  if (r->cfg.structure_norm == RL_ROTP_STRUCT_REFERENCE) {
    const rotp_norm *g = &nm[0];
    int64_t j = g->col1, b = g->set1;
    for (int64_t i = off[b]; i < off[b + 1]; i++) gxs[i * D + j] += (real)(2 * gs1_global * X[i * D + j]);
    for (int64_t jj = 0; jj < D; jj++) gxs[g->row2 * D + jj] += (real)(2 * gs2_global * X[g->row2 * D + jj]);
  }
}

