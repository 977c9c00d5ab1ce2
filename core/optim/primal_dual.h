/*
** primal_dual.h -- the projected slack and dual steps of resilient constrained learning (DESIGN section 3):
**   slack:  u      <- [u - lr_slack (alpha u - lambda)]_+          (gradient step on the Lagrangian in u)
**   dual:   lambda <- [lambda + lr_dual (g - eps - u)]_+             (gradient ascent in lambda)
** One entry per constraint; both modify their first argument in place.
*/
#ifndef RL_PRIMAL_DUAL_H
#define RL_PRIMAL_DUAL_H

#include "../rl.h"

/* u (n) <- max(0, u - lr (alpha u - lambda)). alpha >= 0, lr >= 0 (RL_EINVAL otherwise). */
int rl_slack_step(real *u, const real *lambda, int64_t n, double alpha, double lr);

/* lambda (n) <- max(0, lambda + lr (g - eps - u)); u may be NULL (no slack). lr >= 0. */
int rl_dual_step(real *lambda, const real *g, const real *eps, const real *u, int64_t n, double lr);

#endif
