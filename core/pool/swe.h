/*
** swe.h -- sliced-Wasserstein embedding pooling (SWE) and its constrained variant (C-SWE).
**
** SWE (DESIGN section 3): L learnable slices theta_l = v_l / |v_l| (parameter `theta`, L x dim, the v_l), a
** learnable reference set R (parameter `reference`, M x dim). For a set X (N x dim): project on each slice, sort;
** when N != M interpolate the sorted projections at M quantiles (swgg.h); the embedding of slice l for reference
** element m is E[l, m] = theta_l . r_m - (input quantile paired with m). Output:
**   RL_SWE_OUT_FLAT       E flattened, L * M columns (slice-major), the paper's embedding;
**   RL_SWE_OUT_REFERENCE  the authors' aggregation [sum_l omega_l E[l, :] (M values), E w^T (L values)], with
**                         omega = softmax(-lambda / tau) over slices (uniform for plain SWE: lambda = 0) and the
**                         learnable w (parameter `weight`, 1 x M).
** Pairing: the paper pairs r_m with the input quantile of the same rank (default); compat = 1 reproduces the
** authors' code (golden README 6.11): the quantile at position argsort(R)[m], and eps_mach in the interpolation.
**
** C-SWE adds, in training mode, the per-slice SWGG (swgg.h) of every set against R: g_l = mean over sets of soft
** SWGG_l (differentiable) and the hard value (exact sorts). The Lagrangian term sum_l lambda_l (g_l - eps_l - u_l)
** is added to the loss in backward (its gradient is computed in the forward with the lambda of that moment).
** rl_cswe_dual_step is the projected slack and dual step the runner calls after each optimizer step; compat = 1
** instead updates lambda inside the forward from the hard values and has no slack.
*/
#ifndef RL_SWE_H
#define RL_SWE_H

#include "../nn/module.h"
#include "swgg.h"

enum { RL_SWE_OUT_FLAT = 0, RL_SWE_OUT_REFERENCE = 1 };

/* Defaults (documented in the Lua constructors). */
#define RL_SWE_DEFAULT_TAU 1.0             /* temperature of omega = softmax(-lambda / tau) */
#define RL_CSWE_DEFAULT_LAPSUM_T 10.0      /* LapSum alpha, the authors' default */
#define RL_CSWE_DEFAULT_SOFTSORT_T 1.0     /* SoftSort tau */
#define RL_CSWE_DEFAULT_LR 0.1             /* dual and slack learning rates (the authors' dual_lr) */
#define RL_CSWE_DEFAULT_ALPHA 1.0          /* slack penalty alpha/2 |u|^2 */

typedef struct rl_swe_config {
  int64_t dim, slices, refs; /* input width, L, M */
  int output;                /* RL_SWE_OUT_FLAT or RL_SWE_OUT_REFERENCE */
  int compat;                /* 0: the paper; 1: the authors' code (golden) */
  double tau;                /* omega temperature (reference output) */
} rl_swe_config;

typedef struct rl_cswe_config {
  int soft;               /* RL_SOFT_SOFTSORT or RL_SOFT_LAPSUM */
  double temperature;     /* of the soft permutation */
  const real *eps;        /* L bounds (copied), or NULL to measure them: eps = eps_fraction * hard SWGG of the
                             first training batch */
  double eps_fraction;
  int slack;              /* 1: resilient slack u >= 0 with penalty alpha/2 |u|^2 */
  double alpha, lr_slack, lr_dual;
} rl_cswe_config;

/* Validation of the constructor arguments (RL_EINVAL naming the bad one; `kind` prefixes the message). */
int rl_swe_config_check(const rl_swe_config *cfg, const char *kind);
int rl_cswe_config_check(const rl_swe_config *cfg, const rl_cswe_config *ccfg);

/* Constructors: parameters initialised from rng (theta: orthogonal rows, reference: standard normal, weight:
** uniform(-1/sqrt(M), 1/sqrt(M))). NULL on error (message in rl_error()). */
rl_module *rl_swe_new(const rl_swe_config *cfg, rl_rng *rng);
rl_module *rl_cswe_new(const rl_swe_config *cfg, const rl_cswe_config *ccfg, rl_rng *rng);

int rl_swe_is(const rl_module *m);  /* 1 for pool_swe and pool_cswe modules */
int rl_cswe_is(const rl_module *m); /* 1 for pool_cswe */

/* The unit slicing directions theta_l = v_l / |v_l| (L x dim) into out. */
int rl_swe_directions(const rl_module *m, real *out);

/* C-SWE state, L values each. swgg: of the last training forward (RL_ESTATE before one). eps: RL_ESTATE while it
** is still to be measured. The setters copy L values (duals and slack must be >= 0, eps finite and >= 0). */
int rl_cswe_swgg(const rl_module *m, const real **hard, const real **soft);
const real *rl_cswe_dual(const rl_module *m);
const real *rl_cswe_slack(const rl_module *m);
int rl_cswe_eps(const rl_module *m, const real **eps);
int rl_cswe_set_dual(rl_module *m, const real *v);
int rl_cswe_set_slack(rl_module *m, const real *v);
int rl_cswe_set_eps(rl_module *m, const real *v);
/* Value of the Lagrangian term of the last training forward: sum_l lambda_l (g_l - eps_l - u_l) + alpha/2 |u|^2
** (lambda as used by that forward). RL_ESTATE before one. */
int rl_cswe_lagrangian(const rl_module *m, double *value);
/* The projected slack and dual steps with the hard SWGG of the last training forward. *applied = 0 (and nothing
** changes) with compat = 1, whose forward already updated the duals. */
int rl_cswe_dual_step(rl_module *m, int *applied);

/* ---------------------------------------------------------------- internal: shared by swe.c and cswe.c */

typedef struct rl_swe rl_swe;

/* The SWGG part of a C-SWE training forward, after the embedding (cswe.c). */
int rl_cswe_train_forward(rl_swe *s, const rl_batch *in);

/* Indices of the module's workspaces (rl_swe.ws). */
enum {
  SWE_WS_PROJ, SWE_WS_RPROJ, SWE_WS_PERM, SWE_WS_RORDER, SWE_WS_PAIR, SWE_WS_EMB, SWE_WS_GTHETA, SWE_WS_GRP,
  SWE_WS_GSSWGG, SWE_WS_GRPSWGG, SWE_WS_GXSWGG, SWE_WS_GRSWGG, SWE_WS_THREAD,
  SWE_WS_XT, SWE_WS_RT, SWE_WS_GXT, SWE_WS_GRT, SWE_WS_PR, SWE_WS_Y, SWE_WS_REFOP, SWE_WS_COSTS, SWE_WS_MISC,
  SWE_WS_THREADSWGG, SWE_WS_TOUCHED, SWE_WS_COUNT
};

struct rl_swe {
  rl_module base;
  rl_swe_config cfg;
  int constrained;
  rl_cswe_config ccfg; /* eps pointer cleared after construction */
  /* constraint state (C-SWE), L values each */
  real *lambda, *slack, *eps, *swgg_hard, *swgg_soft;
  int eps_ready, has_swgg;
  double lagrangian;
  int swgg_grad; /* the last forward left SWGG gradients for backward */
  /* forward cache */
  int64_t total, nsets, nmax;
  real *theta_n;  /* L x dim */
  double *vnorm;  /* L */
  real *omega;    /* L */
  real *proj;     /* L x total: projections of the inputs, slice-major */
  real *rproj;    /* L x M */
  int32_t *perm;  /* L x total: per slice and set, ascending argsort (local indices) */
  int32_t *rorder; /* L x M: ascending argsort of the reference projections */
  int32_t *pair;  /* L x M: sorted position paired with reference m */
  real *emb;      /* nsets x L x M (reference output only) */
  /* backward scratch */
  real *grp;      /* L x M */
  real *gtheta;   /* L x dim */
  /* SWGG gradients left by a training forward */
  real *gs_swgg;  /* total x L */
  real *grp_swgg; /* L x M */
  real *gx_swgg;  /* total x dim */
  real *gr_swgg;  /* M x dim */
  /* per-thread scratch */
  char *thread_mem;
  size_t thread_bytes;
  int nthreads;
  rl_workspace ws[SWE_WS_COUNT];
};


/* Allocation of the shared struct with fresh parameters (ops: pool_swe's or pool_cswe's), and the embedding ops
** pool_cswe reuses under its own kind name. */
rl_swe *rl_swe_alloc(const rl_swe_config *cfg, const rl_module_ops *ops, rl_rng *rng);
int rl_swe_out_cols_impl(const rl_module *m, const rl_batch *in, int64_t *cols);
int rl_swe_forward_impl(rl_module *m, const rl_batch *in, rl_tensor *out);
int rl_swe_backward_impl(rl_module *m, const rl_batch *in, const rl_tensor *gout, rl_tensor *gin);
void rl_swe_destroy_impl(rl_module *m);

/* Grows workspace k of s to hold bytes (aligned) and returns it, or NULL (message set). */
void *rl_swe_workspace(rl_swe *s, int k, size_t bytes);

#endif
