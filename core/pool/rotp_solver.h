/*
** rotp_solver.h -- the per-set interface between the ROTP module (rotp.c) and its solvers (rotp_sinkhorn.c,
** rotp_badmm.c, rotp_implicit.c). Internal to core/pool.
**
** Every solver works on ONE set: x is its own N x D block of rows (row n = sample n, column d = feature d), the
** plan P is N x D in the same layout (the transpose of the paper's D x N). All iterates are kept in the log domain.
** A forward call may record a trace (the per-iteration state its backward needs) into caller-owned storage; the
** backward call replays the iterations in reverse, hand-derived step by step (what autograd of the reference
** computes). Nothing is allocated here: `work` is per-thread scratch sized by the *_work_size functions.
*/
#ifndef RL_ROTP_SOLVER_H
#define RL_ROTP_SOLVER_H

#include "rotp.h"

/* Effective (post-softplus) parameter values of one unrolled iteration. */
typedef struct rotp_step {
  real a0, a1, a2, a3, rho;
} rotp_step;

/* What a solver needs to know besides the set. */
typedef struct rotp_opts {
  int solver;              /* RL_ROTP_SINKHORN, RL_ROTP_BADMM_E, RL_ROTP_BADMM_Q */
  int iters;               /* unrolled iterations T (Sinkhorn without structure: scaling steps) */
  int inner;               /* Sinkhorn with structure: scaling steps per outer step */
  int structure;           /* 1: the a0 (Gromov-Wasserstein) term is present */
  int compat;              /* 1: the authors' code (u/e Jacobi Sinkhorn, log(t + eps), ...) */
  int debug;               /* 1: also accumulate dL/dc2 (N x N) */
  const rotp_step *steps;  /* iters entries */
} rotp_opts;

/* One set's problem. */
typedef struct rotp_set {
  int64_t n, d;
  const real *x;           /* n x d */
  const real *lp0, *lq0;   /* log priors (d, n) as the solver uses them (compat: log(q0 + eps)) */
  const real *p0, *q0;     /* plain priors (compat initial plan of the structured Sinkhorn) */
  const real *c1;          /* d x d, normalised feature similarity (structure only) */
  real inv_s2;             /* M(t) = c2 t c1 = inv_s2 X (X^T t) c1 with c2 = X X^T * inv_s2 */
  real *plan;              /* n x d output P */
  real *lplan;             /* n x d output log P (eq. 5 and the backward use it: P may underflow in float) */
  real *trace;             /* recorded iteration state (NULL: not recorded, backward impossible) */
  real *work;              /* per-thread scratch */
} rotp_set;

/* Gradient outputs of one set; every array is accumulated into (+=). */
typedef struct rotp_grads {
  const real *glog;        /* n x d: dL/d(log P) = dL/dP .* P (input) */
  real *gx;                /* n x d: dL/dx with c1, c2 held fixed; NULL: not wanted */
  real *gxs;               /* n x d: the part of dL/dx that flows through c1 = G/s1 and c2 = K/s2 (structure) */
  real *glp0, *glq0;       /* d, n */
  real *gp0, *gq0;         /* d, n: through the plain priors (compat initial plan) */
  real *gc1;               /* d x d: dL/dc1 (structure) */
  real *gc2;               /* n x n: dL/dc2 (debug only, else NULL) */
  double sdot;             /* sum over uses of a0 <dL/dM, M>: gives the gradient w.r.t. the normalisers */
  double *gstep;           /* iters x RL_ROTP_NALPHA: dL/d(effective value) per unrolled iteration */
} rotp_grads;

/* Sizes in `real` elements for a set of n rows (trace: per set; work: per thread, for the largest set). */
size_t rotp_sinkhorn_trace_size(const rotp_opts *o, int64_t n, int64_t d);
size_t rotp_sinkhorn_work_size(const rotp_opts *o, int64_t n, int64_t d);
void rotp_sinkhorn_forward(const rotp_opts *o, const rotp_set *s);
void rotp_sinkhorn_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g);

size_t rotp_badmm_trace_size(const rotp_opts *o, int64_t n, int64_t d);
size_t rotp_badmm_work_size(const rotp_opts *o, int64_t n, int64_t d);
void rotp_badmm_forward(const rotp_opts *o, const rotp_set *s);
void rotp_badmm_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g);

/* Forward without a trace, returning the final scalings u (d) and v (n) (default update, no structure). */
void rotp_sinkhorn_fixed_point(const rotp_opts *o, const rotp_set *s, real *u, real *v);

/* rotp_badmm.c helpers shared with rotp_badmm_fused.c (the a0 = 0 paths). Trace layout: lt_k at 2k nd, Ys_k /
** ls'_k at (2k + 1) nd for k < T - 1 (the last iteration stops after its t-step), then T vector blocks of vblk. */
int64_t rotp_badmm_vblk(int64_t n, int64_t d);
static inline int64_t rotp_badmm_voff(int64_t T, int64_t nd) { return (2 * T - 1) * nd; }
/* The fused path (a0 = 0, rotp_badmm_fused.c) keeps t and s' too, and no slot for the last iteration (its lt and t
** are the plan's, lplan and plan): per iteration k < T - 1, lt_k at 4k nd, Ys_k / ls'_k at (4k + 1) nd, and t_k, s'_k
** as U_k = exp(Yt - g) at (4k + 2) nd and E_k = exp(Ys - g) at (4k + 3) nd; then T vector blocks of vblk and per
** iteration the row scales (n), the column scales (d) with t = U rsc, s' = E scale, and the inverse column sums of E
** (d: softmax_n(Ys) = E ics). */
static inline int64_t rotp_badmm_fused_voff(int64_t T, int64_t nd) { return 4 * (T - 1) * nd; }
void rotp_log_softmax(int64_t n, const real *y, real *out);
double rotp_badmm_shift_dot(int64_t m, const real *g, const real *a, const real *b);
void rotp_badmm_compat_marginals(const rotp_step *st, const rotp_set *s, const real *vc, real *vn, const real *rowsum,
                                 const real *colsum, real *tmp);
void rotp_badmm_compat_marginal_backward(int64_t m, real r, real a, const real *l, const real *lprior, const real *zd,
                                         const real *l2, real *g, real *cg, real *gprior, double *gr, double *ga);
/* The default marginal steps 6'-7' (rotp_badmm.c's header) and their reverse. */
void rotp_badmm_marginals(const rotp_step *st, int quad, const rotp_set *s, const real *C, const real *R, real *lmu2,
                          real *leta2, real *tmp);
void rotp_badmm_marginals_backward(const rotp_step *st, int quad, const rotp_set *s, const real *C, const real *R,
                                   const real *lmu2, const real *leta2, real *gmu, real *geta, real *dC, real *dR,
                                   real *glp0, real *glq0, double *gr, double *ga1, double *ga2, double *ga3);
void rotp_badmm_forward_fused(const rotp_opts *o, const rotp_set *s);
void rotp_badmm_backward_fused(const rotp_opts *o, const rotp_set *s, rotp_grads *g);

/* Implicit differentiation (Sinkhorn, no structure, default update): trace = the fixed point's (u, v). */
size_t rotp_implicit_trace_size(int64_t n, int64_t d);
size_t rotp_implicit_work_size(int64_t n, int64_t d);
void rotp_implicit_backward(const rotp_opts *o, const rotp_set *s, rotp_grads *g);

/* Structure term M(t) = inv_s2 X ((X^T t) c1) (n x d), through d x d products only. tmp: 2 d^2. keep (2 d^2, may
** be NULL): receives X^T t and (X^T t) c1 for the reverse (a trace slot). */
void rotp_struct_apply(const rotp_set *s, const real *t, real *M, real *tmp, real *keep);
/* Reverse of M(t) scaled by a0, for the adjoint g = dL/d(M/a0... ) i.e. the term a0 M(t) with dL/d(a0 M) = g:
**   gt += a0 c2 g c1;  gxs += a0 d<g, M>/dX through c2 (c1 through gc1);  gc1 += a0 (c2 t)^T g;
**   gc2 += a0 g (t c1)^T when gc2 (debug). Returns <g, M(t)>. tmp: 3 d^2 (+ n d when gc2). kept: the forward's keep
**   of the same t (NULL: recomputed from t). gxs and gc1 (both X's alone) may be NULL when no input gradient is
**   wanted: their products (half the n d^2 work) are skipped. */
double rotp_struct_backward(const rotp_set *s, const real *t, const real *g, real a0, real *gt, real *gxs, real *gc1,
                            real *gc2, real *tmp, const real *kept);
/* d x d slots a structured solver keeps per use of the structure term (X^T t and W) */
#define ROTP_STRUCT_KEEP(d) (2 * (d) * (d))
size_t rotp_struct_work_size(int64_t n, int64_t d, int debug);

/* Shared row / column log-sum-exp of a materialised n x d matrix (out: n or d values; cm, cs: d scratch). */
void rotp_lse_rows(int64_t n, int64_t d, const real *Y, real *out);
void rotp_lse_cols(int64_t n, int64_t d, const real *Y, real *out, real *cm, real *cs);

/* Index of the effective values in gstep rows. */
enum { ROTP_G_A0 = RL_ROTP_A0, ROTP_G_A1 = RL_ROTP_A1, ROTP_G_A2 = RL_ROTP_A2, ROTP_G_A3 = RL_ROTP_A3,
       ROTP_G_RHO = RL_ROTP_RHO };

/* A marginal below exp(ROTP_LOG_MARGIN_FLOOR) would overflow the exp(-log mass) of the BADMM reverse's softmax
** t exp(-leta) (the plan's rows and columns can carry almost no mass once a2, a3 are small): such rows and columns
** take the softmax as exp(log entry - log mass) instead, one exp per entry. */
#ifdef RL_DOUBLE
#define ROTP_LOG_MARGIN_FLOOR (-600.0)
#else
#define ROTP_LOG_MARGIN_FLOOR (-60.0)
#endif

/* The authors' epsilon (golden README 1.1): log(q0 + eps) and log(t + eps), compat only. */
#define ROTP_REF_EPS 1e-8
/* Proximal weight tau of the structured Sinkhorn (Algorithm 1): e = a1 + tau. The reference uses 1. */
#define ROTP_TAU 1.0

#endif
