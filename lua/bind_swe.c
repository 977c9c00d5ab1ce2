/*
** bind_swe.c -- Lua binding of the sliced-Wasserstein embedding area: the pool_swe and pool_cswe constructors,
** their extra methods (duals, slack, SWGG of the last forward, dual_step), the soft permutation operators
** (soft_perm, soft_perm_apply, soft_perm_backward) and the projected primal-dual step (primal_dual_step).
*/
#include <math.h>
#include <string.h>


#include "../core/optim/primal_dual.h"
#include "../core/pool/softsort.h"
#include "../core/pool/swe.h"

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
  rl_softperm_prepare(&sp, n, r->t.data, 1, NULL);
  rlb_tensor *gr = rlb_newtensor(L, r->t.ndim, r->t.shape);
  rlb_tensor *gx = rlb_newmatrix(L, n, c);
  rl_softperm_backward(&sp, c, X->t.data, c, G->t.data, c, 1, gr->t.data, 1, gx->t.data, c);
  return 2;
}

/* ---------------------------------------------------------------------------------------- primal-dual step */

/* Reads a tensor-like argument with exactly n values (n < 0: any, set it). */
static rlb_tensor *check_vector(lua_State *L, int idx, int64_t *n, const char *fname, const char *what) {
  rlb_tensor *t = rlb_checktensorlike(L, idx);
  if (*n < 0) *n = t->t.numel;
  if (t->t.numel != *n)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s: expected %s with %d values, got %d", fname, what, (int)*n,
                                          (int)t->t.numel));
  if (rl_expect_finite(t->t.data, t->t.numel, what)) rlb_argerror(L, idx);
  return t;
}

/* rl.primal_dual_step(lambda, g, eps [, u [, {alpha=, lr_slack=, lr_dual=}]]) -> lambda, u
** In place: u <- [u - lr_slack (alpha u - lambda)]_+ (when u is given), then
** lambda <- [lambda + lr_dual (g - eps - u)]_+ with the new u. */
static int l_primal_dual_step(lua_State *L) {
  static const char *const known[] = {"alpha", "lr_slack", "lr_dual", NULL};
  int64_t n = -1;
  rlb_tensor *lam = check_vector(L, 1, &n, "primal_dual_step", "lambda");
  rlb_tensor *g = check_vector(L, 2, &n, "primal_dual_step", "g");
  rlb_tensor *eps = check_vector(L, 3, &n, "primal_dual_step", "eps");
  rlb_tensor *u = lua_isnoneornil(L, 4) ? NULL : check_vector(L, 4, &n, "primal_dual_step", "u");
  rlb_check_options(L, 5, "primal_dual_step", known);
  double alpha = rlb_opt_number(L, 5, "alpha", RL_CSWE_DEFAULT_ALPHA);
  double lr_slack = rlb_opt_number(L, 5, "lr_slack", RL_CSWE_DEFAULT_LR);
  double lr_dual = rlb_opt_number(L, 5, "lr_dual", RL_CSWE_DEFAULT_LR);
  for (int64_t i = 0; i < n; i++)
    if (lam->t.data[i] < 0 || (u && u->t.data[i] < 0))
      return luaL_argerror(L, lam->t.data[i] < 0 ? 1 : 4, "primal_dual_step: duals and slack must be >= 0");
  if (u && rl_slack_step(u->t.data, lam->t.data, n, alpha, lr_slack)) return rlb_argerror(L, 5);
  if (rl_dual_step(lam->t.data, g->t.data, eps->t.data, u ? u->t.data : NULL, n, lr_dual)) return rlb_argerror(L, 5);
  lua_pushvalue(L, 1);
  if (u)
    lua_pushvalue(L, 4);
  else
    lua_pushnil(L);
  return 2;
}

/* ---------------------------------------------------------------------------------------- modules */

static const char *const output_names[] = {"flat", "reference", NULL};
static const char *const compat_names[] = {"paper", "reference", NULL};

static int64_t required_size(lua_State *L, int idx, const char *key, const char *fname, const char *what) {
  if (!rlb_opt_present(L, idx, key))
    luaL_error(L, "%s: option '%s' is required (%s)", fname, key, what);
  return (int64_t)rlb_opt_integer(L, idx, key, 0);
}

static rl_swe_config check_swe_config(lua_State *L, int idx, const char *fname) {
  rl_swe_config cfg;
  if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "%s: expected a table of options {dim =, slices =, refs =}", fname);
  cfg.dim = required_size(L, idx, "dim", fname, "input width");
  cfg.slices = required_size(L, idx, "slices", fname, "number of slices L");
  cfg.refs = required_size(L, idx, "refs", fname, "number of reference points M");
  cfg.output = rlb_opt_choice(L, idx, "output", "flat", output_names);
  cfg.compat = rlb_opt_choice(L, idx, "compat", "paper", compat_names);
  cfg.tau = rlb_opt_number(L, idx, "tau", RL_SWE_DEFAULT_TAU);
  return cfg;
}

/* rl.pool.swe{dim =, slices =, refs =, output = "flat" | "reference", tau = 1, compat = "paper" | "reference", rng =} */
static int l_pool_swe(lua_State *L) {
  static const char *const known[] = {"dim", "slices", "refs", "output", "tau", "compat", "rng", NULL};
  rlb_check_options(L, 1, "pool_swe", known);
  rl_swe_config cfg = check_swe_config(L, 1, "pool_swe");
  if (rl_swe_config_check(&cfg, "pool_swe")) return rlb_argerror(L, 1);
  rl_rng *rng = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  u->m = rl_swe_new(&cfg, rng);
  if (!u->m) return rlb_error(L);
  return 1;
}

/* rl.pool.cswe{...swe options, soft = "softsort" | "lapsum", temperature =, eps = number | list | tensor,
**              eps_fraction =, slack = true, alpha = 1, lr_slack = 0.1, lr_dual = 0.1} */
static int l_pool_cswe(lua_State *L) {
  static const char *const known[] = {"dim",  "slices", "refs",  "output",   "tau",     "compat",       "rng",
                                      "soft", "temperature", "eps", "eps_fraction", "slack", "alpha", "lr_slack",
                                      "lr_dual", NULL};
  rlb_check_options(L, 1, "pool_cswe", known);
  rl_swe_config cfg = check_swe_config(L, 1, "pool_cswe");
  if (rl_swe_config_check(&cfg, "pool_cswe")) return rlb_argerror(L, 1);
  rl_cswe_config cc;
  cc.soft = rlb_opt_choice(L, 1, "soft", cfg.compat ? "lapsum" : "softsort", soft_methods) == 1 ? RL_SOFT_LAPSUM
                                                                                              : RL_SOFT_SOFTSORT;
  cc.temperature = rlb_opt_number(L, 1, "temperature",
                                  cc.soft == RL_SOFT_LAPSUM ? RL_CSWE_DEFAULT_LAPSUM_T : RL_CSWE_DEFAULT_SOFTSORT_T);
  cc.slack = rlb_opt_boolean(L, 1, "slack", cfg.compat ? 0 : 1);
  cc.alpha = rlb_opt_number(L, 1, "alpha", RL_CSWE_DEFAULT_ALPHA);
  cc.lr_slack = rlb_opt_number(L, 1, "lr_slack", RL_CSWE_DEFAULT_LR);
  cc.lr_dual = rlb_opt_number(L, 1, "lr_dual", RL_CSWE_DEFAULT_LR);
  cc.eps = NULL;
  cc.eps_fraction = 0;
  int has_eps = rlb_opt_present(L, 1, "eps"), has_frac = rlb_opt_present(L, 1, "eps_fraction");
  if (has_eps == has_frac)
    return luaL_error(L, "pool_cswe: give exactly one of 'eps' (bound per slice: a number or %d values) and "
                         "'eps_fraction' (bounds = fraction of the first batch's SWGG)", (int)cfg.slices);
  if (has_frac) cc.eps_fraction = rlb_opt_number(L, 1, "eps_fraction", 0);
  if (has_eps) { /* a number for every slice, or L values */
    rlb_tensor *e = rlb_newtensor(L, 1, &cfg.slices);
    lua_getfield(L, 1, "eps");
    if (lua_type(L, -1) == LUA_TNUMBER) {
      rl_fill(e->t.data, cfg.slices, (real)lua_tonumber(L, -1));
    } else if (lua_type(L, -1) == LUA_TTABLE || rlb_totensor(L, -1)) {
      rlb_tensor *v = rlb_checktensorlike(L, lua_gettop(L));
      if (v->t.numel != cfg.slices)
        return luaL_error(L, "pool_cswe: option 'eps' has %d values, expected one number or %d (one per slice)",
                          (int)v->t.numel, (int)cfg.slices);
      memcpy(e->t.data, v->t.data, (size_t)cfg.slices * sizeof(real));
    } else {
      return luaL_error(L, "pool_cswe: option 'eps' must be a number, a list or a tensor, got %s",
                        luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    cc.eps = e->t.data; /* e stays on the stack until the module has copied it */
  }
  if (rl_cswe_config_check(&cfg, &cc)) return rlb_argerror(L, 1);
  rl_rng *rng = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  u->m = rl_cswe_new(&cfg, &cc, rng);
  if (!u->m) return rlb_error(L);
  return 1;
}

static rl_module *check_swe(lua_State *L, int constrained) {
  rl_module *m = rlb_checkmodule(L, 1);
  if (constrained ? !rl_cswe_is(m) : !rl_swe_is(m))
    luaL_argerror(L, 1, constrained ? "expected a pool_cswe module" : "expected a pool_swe or pool_cswe module");
  return m;
}

static int64_t swe_slices(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  return m->params[0].value.shape[0];
}

static void push_vector(lua_State *L, const real *v, int64_t n) {
  rlb_tensor *t = rlb_newtensor(L, 1, &n);
  memcpy(t->t.data, v, (size_t)n * sizeof(real));
}

/* m:directions() -> L x dim unit slicing directions theta_l = v_l / |v_l| */
static int m_directions(lua_State *L) {
  rl_module *m = check_swe(L, 0);
  rl_param *v = &m->params[0];
  rlb_tensor *t = rlb_newmatrix(L, v->value.shape[0], v->value.shape[1]);
  if (rl_swe_directions(m, t->t.data)) return rlb_error(L);
  return 1;
}

/* m:swgg() -> {hard = tensor L, soft = tensor L} of the last training forward, or nil before one */
static int m_swgg(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  const real *hard, *soft;
  if (rl_cswe_swgg(m, &hard, &soft)) {
    lua_pushnil(L);
    return 1;
  }
  int64_t n = swe_slices(L);
  lua_createtable(L, 0, 2);
  push_vector(L, hard, n);
  lua_setfield(L, -2, "hard");
  push_vector(L, soft, n);
  lua_setfield(L, -2, "soft");
  return 1;
}

static int m_dual(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  push_vector(L, rl_cswe_dual(m), swe_slices(L));
  return 1;
}

static int m_slack(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  push_vector(L, rl_cswe_slack(m), swe_slices(L));
  return 1;
}

/* m:eps() -> tensor L, or nil while it is still to be measured (eps_fraction) */
static int m_eps(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  const real *e;
  if (rl_cswe_eps(m, &e)) {
    lua_pushnil(L);
    return 1;
  }
  push_vector(L, e, swe_slices(L));
  return 1;
}

static int set_state(lua_State *L, int (*set)(rl_module *, const real *), const char *fname) {
  rl_module *m = check_swe(L, 1);
  int64_t n = swe_slices(L);
  rlb_tensor *v = rlb_checktensorlike(L, 2);
  if (v->t.numel != n)
    return luaL_argerror(L, 2, lua_pushfstring(L, "%s: expected %d values (one per slice), got %d", fname, (int)n,
                                               (int)v->t.numel));
  if (set(m, v->t.data)) return rlb_argerror(L, 2);
  lua_settop(L, 1);
  return 1;
}

static int m_set_dual(lua_State *L) { return set_state(L, rl_cswe_set_dual, "set_dual"); }
static int m_set_slack(lua_State *L) { return set_state(L, rl_cswe_set_slack, "set_slack"); }
static int m_set_eps(lua_State *L) { return set_state(L, rl_cswe_set_eps, "set_eps"); }

/* m:dual_step() -> true if the duals (and slack) were updated; false with compat = "reference" (done in forward) */
static int m_dual_step(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  int applied;
  if (rl_cswe_dual_step(m, &applied)) return rlb_error(L);
  lua_pushboolean(L, applied);
  return 1;
}

/* m:lagrangian() -> value of the Lagrangian term of the last training forward, or nil before one */
static int m_lagrangian(lua_State *L) {
  rl_module *m = check_swe(L, 1);
  double v;
  if (rl_cswe_lagrangian(m, &v)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushnumber(L, v);
  return 1;
}

/* ---------------------------------------------------------------------------------------- registration */

int rlb_open_swe(lua_State *L) {
  static const luaL_Reg fns[] = {{"soft_perm", l_soft_perm},
                                 {"soft_perm_apply", l_soft_perm_apply},
                                 {"soft_perm_backward", l_soft_perm_backward},
                                 {"primal_dual_step", l_primal_dual_step},
                                 {"pool_swe", l_pool_swe},
                                 {"pool_cswe", l_pool_cswe},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  static const luaL_Reg swe_methods[] = {{"directions", m_directions}, {NULL, NULL}};
  static const luaL_Reg cswe_methods[] = {{"directions", m_directions}, {"swgg", m_swgg},
                                          {"dual", m_dual},             {"slack", m_slack},
                                          {"eps", m_eps},               {"set_dual", m_set_dual},
                                          {"set_slack", m_set_slack},   {"set_eps", m_set_eps},
                                          {"dual_step", m_dual_step},   {"lagrangian", m_lagrangian},
                                          {NULL, NULL}};
  rlb_register_methods(L, "pool_swe", swe_methods);
  rlb_register_methods(L, "pool_cswe", cswe_methods);
  return 0;
}
