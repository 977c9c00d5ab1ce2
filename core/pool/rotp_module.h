/*
** rotp_module.h -- the ROTP module's state, shared by rotp.c (parameters, dispatch), rotp_priors.c (p0, q0 and the
** structure matrices) and rotp_output.c (the pooled output). Internal to core/pool.
*/
#ifndef RL_ROTP_MODULE_H
#define RL_ROTP_MODULE_H

#include "rotp_solver.h"

typedef struct rotp_module {
  rl_module base;
  rl_rotp_config cfg;
  int pidx[RL_ROTP_NALPHA]; /* parameter index of each learnable family, -1 otherwise */
  int iV, iw, iU;           /* q0.V, q0.w, p0.U parameter indices (-1 if absent) */
  rotp_step *steps;         /* iters entries, refreshed at every forward */
  rotp_opts opts;
  /* state of the last forward */
  int has_trace;
  int64_t B, R, nmax;
  rl_workspace w_off, w_den, w_pscr, w_fout, w_plan, w_lplan, w_lq0, w_q0, w_lp0, w_p0, w_c1, w_s, w_toff, w_trace,
      w_work, w_H, w_xsum, w_out;
  /* backward scratch and debug results */
  rl_workspace w_gplan, w_gx, w_gxs, w_glp0, w_glq0, w_gp0, w_gq0, w_gc1, w_sdot, w_gstep, w_gc2, w_c2off, w_xpart;
  int has_debug;
} rotp_module;

/* per-set structure scalars kept in w_s: s1, s2, argmax row of s2 (global index), argmax column of s1, its set */
typedef struct rotp_norm {
  double s1, s2;
  int64_t row2, col1, set1;
} rotp_norm;

static inline real *wsr(rl_workspace *w, size_t count, int *rc) {
  if (*rc) return NULL;
  if (rl_workspace_reserve(w, (count ? count : 1) * sizeof(real))) {
    *rc = RL_ENOMEM;
    return NULL;
  }
  return w->data;
}

static inline void *wsb(rl_workspace *w, size_t bytes, int *rc) {
  if (*rc) return NULL;
  if (rl_workspace_reserve(w, bytes ? bytes : 1)) {
    *rc = RL_ENOMEM;
    return NULL;
  }
  return w->data;
}

/* rotp_priors.c (the backward adds the priors' dL/dx into gx; NULL: not wanted) */
int rotp_priors_forward(rotp_module *r, const rl_batch *in);
void rotp_priors_backward(rotp_module *r, const rl_batch *in, real *gx);
int rotp_structure_forward(rotp_module *r, const rl_batch *in);
void rotp_structure_backward(rotp_module *r, const rl_batch *in, real *gxs);

/* rotp_output.c: one set's pooled output and its reverse (dL/dlogP and the direct dL/dx) */
void rotp_pool_ref_forward(int64_t n, int64_t d, const real *x, const real *P, real *f);
void rotp_pool_ref_backward(int64_t n, int64_t d, const real *x, const real *P, const real *g, real *glog, real *gx);
void rotp_pool_eq5_forward(int64_t n, int64_t d, const real *x, const real *P, const real *LP, real *f, real *lden,
                           real *den);
void rotp_pool_eq5_backward(int64_t n, int64_t d, const real *x, const real *P, const real *LP, const real *g,
                            const real *lden, const real *f, real *gs, real *glog, real *gx);

#endif
