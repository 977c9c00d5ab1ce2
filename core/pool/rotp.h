/*
** rotp.h -- ROTP: regularized optimal-transport pooling (Xu & Cheng, TPAMI 2023) as an rl_module.
**
** For each set X (N x D rows) the layer solves, per set and in the log domain,
**   min_P <-X, P> + a0 <C(X,P), P> + a1 R(P) + a2 KL(P^T 1_N | p0) + a3 KL(P 1_D | q0)
** (P is N x D here, rows = samples) by T unrolled iterations of Sinkhorn scaling or Bregman ADMM, and pools
** f_d = sum_n x_nd P_nd / sum_m P_md (paper eq. 5) or D sum_n x_nd P_nd (the authors' code). The parameters are
** raw vectors a0 a1 a2 a3 rho (value = softplus(raw)), one entry per iteration or one shared; learned priors add
** p0.U (D x D) and q0.V (H x D), q0.w (1 x H). DESIGN.md section 2 and golden/README.md give the math.
*/
#ifndef RL_POOL_ROTP_H
#define RL_POOL_ROTP_H

#include "../nn/module.h"

enum { RL_ROTP_SINKHORN = 0, RL_ROTP_BADMM_E = 1, RL_ROTP_BADMM_Q = 2 };
enum { RL_ROTP_OUT_PAPER = 0, RL_ROTP_OUT_REFERENCE = 1 };
enum { RL_ROTP_STRUCT_PAPER = 0, RL_ROTP_STRUCT_REFERENCE = 1 };
enum { RL_ROTP_GRAD_UNROLLED = 0, RL_ROTP_GRAD_IMPLICIT = 1 };
/* The five scalar parameter families, in this order everywhere. */
enum { RL_ROTP_A0 = 0, RL_ROTP_A1 = 1, RL_ROTP_A2 = 2, RL_ROTP_A3 = 3, RL_ROTP_RHO = 4, RL_ROTP_NALPHA = 5 };

/* Default number of unrolled iterations and of inner Sinkhorn steps (structured Sinkhorn). */
#define RL_ROTP_DEFAULT_ITERS 4
#define RL_ROTP_DEFAULT_INNER 5

/* Longest fixed sample prior q0 (a given vector, for sets of exactly that many rows, e.g. HROTP's top). */
#define RL_ROTP_Q0_FIXED_MAX 64

/* How one of the five families is set up. */
typedef struct rl_rotp_alpha {
  int mode;        /* RL_ROTP_LEARN: learnable raw vector; RL_ROTP_FIXED: constant; RL_ROTP_UNUSED */
  int64_t entries; /* learnable: length of the raw vector (default iters, 1 when shared) */
  double init;     /* learnable: initial effective value (> 0), or NAN for raw = 0.1 N(0,1) (the reference) */
  double value;    /* fixed: the effective value (>= 0) */
} rl_rotp_alpha;
enum { RL_ROTP_LEARN = 0, RL_ROTP_FIXED = 1, RL_ROTP_UNUSED = 2 };

typedef struct rl_rotp_config {
  int64_t dim;          /* D */
  int solver;           /* RL_ROTP_SINKHORN | RL_ROTP_BADMM_E | RL_ROTP_BADMM_Q */
  int iters;            /* T >= 1 */
  int inner;            /* structured Sinkhorn: inner scaling steps K >= 0 */
  int structure;        /* 1: a0 term (learned or fixed a0), 0: unbalanced OT (alpha0 = 0) */
  int compat;           /* 1: reproduce the authors' code exactly (golden vectors) */
  int output;           /* RL_ROTP_OUT_* */
  int structure_norm;   /* RL_ROTP_STRUCT_*: per-set maxima (paper) or batch-global (reference) */
  int grad;             /* RL_ROTP_GRAD_* */
  int p0_learn, q0_learn;
  int64_t q0_hidden;    /* hidden width of the q0 attention (default 2 D, as the reference) */
  int64_t q0_n;         /* > 0: q0 is the fixed vector q0_fixed (normalised), every set must have q0_n rows */
  double q0_fixed[RL_ROTP_Q0_FIXED_MAX];
  int debug;            /* keep dL/dc1, dL/dc2 and the partial x gradient for inspection */
  rl_rotp_alpha alpha[RL_ROTP_NALPHA];
} rl_rotp_config;

/* Fills the defaults for dimension dim (Sinkhorn, T = 4, alpha0 = 0, paper output, all alphas learnable). */
void rl_rotp_config_default(rl_rotp_config *c, int64_t dim);

/* Creates the module (NULL + rl_error() on a bad configuration). rng initialises the raw parameters. */
rl_module *rl_pool_rotp_new(const rl_rotp_config *c, rl_rng *g);

/* The configuration of a ROTP module (NULL if m is not one). */
const rl_rotp_config *rl_rotp_config_of(const rl_module *m);

/* Plan of set s of the last forward: n x d rows (the input layout), or NULL before the first forward. */
const real *rl_rotp_plan(const rl_module *m, int64_t s, int64_t *n, int64_t *d);

/* Effective value of family a at unrolled iteration k (softplus of the raw entry j_k, or the fixed value). */
double rl_rotp_value(const rl_module *m, int a, int k);

/* Backward from a gradient w.r.t. the plans (rows x D, input layout) instead of the output; parameters
** accumulate as in rl_module_backward. grad_in may be NULL. */
int rl_rotp_backward_plan(rl_module *m, const rl_batch *in, const rl_tensor *grad_plan, rl_tensor *grad_in);

/* Debug (config.debug): after a backward, dL/dc1 of set s (d x d), dL/dc2 (n x n) and dL/dx with c1, c2 held
** fixed (rows x D). NULL when not available. */
const real *rl_rotp_debug_gc1(const rl_module *m, int64_t s);
const real *rl_rotp_debug_gc2(const rl_module *m, int64_t s);
const real *rl_rotp_debug_xpartial(const rl_module *m);
/* The normalised structure matrices of set s of the last forward: c1 (d x d); c2 is written to out (n x n). */
const real *rl_rotp_c1(const rl_module *m, int64_t s);
int rl_rotp_c2(const rl_module *m, const rl_batch *in, int64_t s, real *out);

/* One vectorised exp pass y = exp(x) over n values, split across the OpenMP threads (for benchmarks). */
void rl_rotp_exp_pass(int64_t n, const real *x, real *y);

#endif
