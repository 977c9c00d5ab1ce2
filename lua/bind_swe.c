/*
** bind_swe.c -- Lua binding of the sliced-Wasserstein embedding area: the pool_swe and pool_cswe constructors,
** their extra methods (duals, slack, SWGG of the last forward, dual_step), the soft permutation operators
** (soft_perm, soft_perm_apply, soft_perm_backward) and the projected primal-dual step (primal_dual_step).
*/
#include <math.h>
#include <string.h>


#include "../core/pool/softsort.h"

#include "bind.h"

/* ---------------------------------------------------------------------------------------- soft permutations */

static const char *const soft_methods[] = {"softsort", "lapsum", NULL};
static const char *const soft_options[] = {"method", "temperature", "descending", NULL};

typedef struct soft_opts {
  int method, descending;
  double temperature;
} soft_opts;

static soft_opts check_soft_opts(lua_State *L, int idx, const char *fname) {
  soft_opts o;
  rlb_check_options(L, idx, fname, soft_options);
  o.method = rlb_opt_choice(L, idx, "method", "softsort", soft_methods) == 1 ? RL_SOFT_LAPSUM : RL_SOFT_SOFTSORT;
  o.temperature = rlb_opt_number(L, idx, "temperature", 1.0);
  o.descending = rlb_opt_boolean(L, idx, "descending", 0);
  if (rl_softperm_check(o.method, o.temperature)) rlb_argerror(L, idx);
  return o;
}

/* Pushes caller memory for an operator (a userdata the GC frees) and lays it out. */
static void push_operator(lua_State *L, rl_softperm *sp, const soft_opts *o, int64_t n, int64_t c) {
  size_t bytes = rl_softperm_bytes(n, c) + 64;
  char *mem = lua_newuserdatauv(L, bytes, 0);
  mem += (64 - ((uintptr_t)mem & 63)) & 63;
  rl_softperm_init(sp, o->method, o->temperature, o->descending, n, c, mem);
}

static int64_t check_values(lua_State *L, int idx, rlb_tensor *r, const char *fname) {
  if (r->t.numel < 1 || r->t.numel > INT32_MAX)
    return luaL_argerror(L, idx, lua_pushfstring(L, "%s: expected 1 to 2^31-1 values, got %d", fname, (int)r->t.numel));
  if (rl_expect_finite(r->t.data, r->t.numel, "values")) return rlb_argerror(L, idx);
  return r->t.numel;
}

/* rl.soft_perm(r [, opts]) -> P: r a vector of n values gives n x n; a Bv x n matrix gives Bv x n x n (rows are
** independent problems). */
static int l_soft_perm(lua_State *L) {
  rlb_tensor *r = rlb_checktensorlike(L, 1);
  soft_opts o = check_soft_opts(L, 2, "soft_perm");
  check_values(L, 1, r, "soft_perm");
  if (r->t.ndim > 2) return luaL_argerror(L, 1, "soft_perm: expected a vector or a matrix of values");
  int64_t bv = r->t.ndim == 2 ? r->t.shape[0] : 1, n = r->t.ndim == 2 ? r->t.shape[1] : r->t.shape[0];
  rl_softperm sp;
  push_operator(L, &sp, &o, n, n);
  rlb_tensor *eye = rlb_newmatrix(L, n, n);
  for (int64_t i = 0; i < n; i++) eye->t.data[i * n + i] = 1;
  int64_t shape[3] = {bv, n, n};
  rlb_tensor *P = r->t.ndim == 2 ? rlb_newtensor(L, 3, shape) : rlb_newmatrix(L, n, n);
  for (int64_t v = 0; v < bv; v++) {
    rl_softperm_prepare(&sp, n, r->t.data + v * n, 1, NULL);
    rl_softperm_apply(&sp, n, eye->t.data, n, P->t.data + v * n * n, n);
  }
  return 1;
}

/* Reads a vector r (n) and an n x c matrix X for the apply/backward functions. */
static void check_pair(lua_State *L, rlb_tensor **r, rlb_tensor **X, int64_t *n, int64_t *c, const char *fname) {
  *r = rlb_checktensorlike(L, 1);
  *X = rlb_checktensorlike(L, 2);
  *n = check_values(L, 1, *r, fname);
  if ((*X)->t.ndim > 2 || rl_rows(&(*X)->t) != *n)
    luaL_argerror(L, 2, lua_pushfstring(L, "%s: expected a matrix with %d rows (one per value), got %d x %d", fname,
                                        (int)*n, (int)rl_rows(&(*X)->t), (int)rl_cols(&(*X)->t)));
  *c = rl_cols(&(*X)->t);
  if (*c < 1) luaL_argerror(L, 2, lua_pushfstring(L, "%s: expected at least one column", fname));
}

/* rl.soft_perm_apply(r, X [, opts]) -> P X (n x c), computed by prefix sums (no n x n matrix). */
static int l_soft_perm_apply(lua_State *L) {
  rlb_tensor *r, *X;
  int64_t n, c;
  check_pair(L, &r, &X, &n, &c, "soft_perm_apply");
  soft_opts o = check_soft_opts(L, 3, "soft_perm_apply");
  rl_softperm sp;
  push_operator(L, &sp, &o, n, c);
  rlb_tensor *PX = rlb_newmatrix(L, n, c);
  rl_softperm_prepare(&sp, n, r->t.data, 1, NULL);
  rl_softperm_apply(&sp, c, X->t.data, c, PX->t.data, c);
  return 1;
}

/* rl.soft_perm_backward(r, X, G [, opts]) -> grad_r (shape of r), grad_X (n x c): the gradients of <G, P X>. */
static int l_soft_perm_backward(lua_State *L) {
  rlb_tensor *r, *X;
  int64_t n, c;
  check_pair(L, &r, &X, &n, &c, "soft_perm_backward");
  rlb_tensor *G = rlb_checktensorlike(L, 3);
  if (G->t.ndim > 2 || rl_rows(&G->t) != n || rl_cols(&G->t) != c)
    return luaL_argerror(L, 3, lua_pushfstring(L, "soft_perm_backward: expected G of shape %d x %d, got %d x %d",
                                               (int)n, (int)c, (int)rl_rows(&G->t), (int)rl_cols(&G->t)));
  soft_opts o = check_soft_opts(L, 4, "soft_perm_backward");
  rl_softperm sp;
  push_operator(L, &sp, &o, n, c);
  rlb_tensor *PX = rlb_newmatrix(L, n, c);
  rl_softperm_prepare(&sp, n, r->t.data, 1, NULL);
  rl_softperm_apply(&sp, c, X->t.data, c, PX->t.data, c);
  rlb_tensor *gr = rlb_newtensor(L, r->t.ndim, r->t.shape);
  rlb_tensor *gx = rlb_newmatrix(L, n, c);
  rl_softperm_backward(&sp, X->t.data, c, G->t.data, c, 1, gr->t.data, 1, gx->t.data, c);
  return 2;
}

/* ---------------------------------------------------------------------------------------- registration */

int rlb_open_swe(lua_State *L) {
  static const luaL_Reg fns[] = {{"soft_perm", l_soft_perm},
                                 {"soft_perm_apply", l_soft_perm_apply},
                                 {"soft_perm_backward", l_soft_perm_backward},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
