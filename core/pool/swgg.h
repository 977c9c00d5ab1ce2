/*
** swgg.h -- the SWGG dissimilarity of one set and one slice (C-SWE eq. 22), hard and soft, and the quantile
** interpolation matrix U it shares with the embedding.
**
** For a set X (n x d) and the reference R (m x d), slice l matches sorted projections: the plan is
**   Pi = P_x^T U^T P_r / m   (n x m),  SWGG^2 = sum_{i,j} ||x_i - r_j||^2 Pi[i, j],
** with P_x, P_r the sorting permutations (hard) or soft permutations (soft), and U (m x n) the linear interpolation
** from the n sorted values to m quantiles (U = I when n = m; then Pi = P_x^T P_r / n). The reference marginal is
** exactly uniform (1/m); the set marginal is (1/m) U^T 1 (1/n when n = m).
** The soft cost never forms Pi: with lifted rows xt_i = [x_i - mu, |x_i - mu|^2, 1] and
** rt_j = [-2 (r_j - mu), 1, |r_j - mu|^2] (any centre mu; <xt_i, rt_j> = |x_i - r_j|^2),
**   SWGG^2 = (1/m) <U P_x Xt, P_r Rt>,
** one inner product of soft-sorted matrices, and its gradient is two structured operator applications.
*/
#ifndef RL_SWGG_H
#define RL_SWGG_H

#include "softsort.h"

/* Interpolation from n sorted values at u_i = (i+1)/(n+1) to m quantiles at v_j = (j+1)/(m+1): row j takes
** (1 - w[j]) x[lo[j]] + w[j] x[lo[j] + 1], lo[j] = (#{i : u_i < v_j}) - 1 clamped to [0, n-2] (linear
** extrapolation outside [u_0, u_{n-1}]). compat = 1 adds the machine epsilon of `real` to the slope's denominator as
** the authors' code does. n = m is the identity (lo[j] = j, w = 0); n = 1 makes every quantile the single value. */
typedef struct rl_interp {
  int64_t n, m;
  int32_t *lo; /* m entries, caller memory */
  real *w;     /* m entries, caller memory */
} rl_interp;

void rl_interp_build(rl_interp *U, int64_t n, int64_t m, int compat);
/* Y (m x c) = U X (X n x c). rev = 1 applies J U J (both sides in reversed order). */
void rl_interp_apply(const rl_interp *U, int rev, int64_t c, const real *X, int64_t ldx, real *Y, int64_t ldy);
/* X (n x c) += U^T Y (Y m x c), rev as above. */
void rl_interp_apply_t(const rl_interp *U, int rev, int64_t c, const real *Y, int64_t ldy, real *X, int64_t ldx);

/* Hard SWGG^2 of one set and one slice: (1/m) sum_j sum_k U[j, k] |x_{xorder[k]} - r_{rorder[j]}|^2, with xorder
** and rorder the ascending argsorts of the projections. X is n x d (rows ldx apart), R is m x d. */
double rl_swgg_hard(const rl_interp *U, int64_t d, const real *X, int64_t ldx, const int32_t *xorder, const real *R,
                    const int32_t *rorder);

/* Panel layout of the lifted matrices: columns are cut into npanels(c) panels of RL_SOFTPERM_BLOCK columns (the
** last zero-padded); panel k of a matrix of `rows` rows is a contiguous rows x RL_SOFTPERM_BLOCK array at
** base + k * panel_stride. Streaming whole panels (instead of strided row pieces) keeps the memory traffic of the
** per-set, per-slice passes sequential. */
static inline int64_t rl_swgg_npanels(int64_t c) { return (c + RL_SOFTPERM_BLOCK - 1) / RL_SOFTPERM_BLOCK; }

/* PA = P A for a matrix in panel layout (nb panels, panel strides as and ps). */
void rl_swgg_panels_apply(rl_softperm *sp, int64_t nb, const real *A, int64_t as, real *PA, int64_t ps);
/* Gradients of <G, P A> (G in panel layout, stride gs): grad_r[i * rstride] += d/dr_i, grad_A += P^T G (panel
** stride gas). */
void rl_swgg_panels_backward(rl_softperm *sp, int64_t nb, const real *A, int64_t as, const real *G, int64_t gs,
                             real *grad_r, int64_t rstride, real *grad_A, int64_t gas);

/* Scratch of the soft SWGG of one set (per thread): the set's operator and three panels. */
typedef struct rl_swgg_soft {
  rl_softperm px;    /* soft permutation of the set's projections */
  real *pxt;         /* n x block: a panel of P_x Xt */
  real *upx;         /* m x block: U P_x Xt */
  real *z;           /* n x block: U^T P_r Rt */
  int64_t n, m, nb;
  int rev;           /* 1 for LapSum (rows in descending order) */
} rl_swgg_soft;

/* Bytes of scratch for sets of up to n rows and m references. */
size_t rl_swgg_soft_bytes(int64_t n, int64_t m);
void rl_swgg_soft_init(rl_swgg_soft *w, int method, double temperature, int64_t n, int64_t m, int64_t nb, void *mem);

/* Soft SWGG^2 of one set: s = the set's projections on the slice (n values, stride sstride) with ascending argsort
** xorder; Xt its lifted rows and PR = P_r Rt (m rows, the operator's row order), both in panel layout (nb panels,
** panel strides xs and rs); U the interpolation (n to m). If T (n rows, panel layout, stride ts) is given it
** receives P_x^T U^T PR, which rl_swgg_soft_grad needs; the operator keeps the rest. */
double rl_swgg_soft_cost(rl_swgg_soft *w, const rl_interp *U, const real *s, int64_t sstride, const int32_t *xorder,
                         const real *Xt, int64_t xs, const real *PR, int64_t rs, real *T, int64_t ts);

/* Gradient of coef * (soft SWGG^2) of the last rl_swgg_soft_cost (with its T): gs[i * gstride] += d/ds_i,
** gXt += d/dXt and Y += coef/m U P_x Xt (the gradient w.r.t. P_r Rt, finished on the reference side); gXt and Y in
** panel layout. */
void rl_swgg_soft_grad(rl_swgg_soft *w, const rl_interp *U, const real *Xt, int64_t xs, const real *PR, int64_t rs,
                       const real *T, int64_t ts, real coef, real *gs, int64_t gstride, real *gXt, int64_t gxs, real *Y,
                       int64_t ys);

#endif
