/*
** bind_rotp.c -- Lua binding of core/pool/rotp: the constructor core.pool_rotp{...} (rl.pool.rotp) and the
** rotp-only methods.
**
**   rl.pool.rotp{dim = D,                      -- required, the input width
**     solver = "sinkhorn" | "badmm-e" | "badmm-q", iters = T (4), inner = K (5; structured Sinkhorn only),
**     alpha0 = 0 | "learn" | v > 0 (fixed),    -- 0: unbalanced OT (no structure term)
**     shared = false, entries = n | {a1 = n, ...},   -- raw vector lengths (default iters, 1 when shared)
**     init = {a1 = 0.7, ...}, fixed = {a2 = 0, ...}, -- effective (softplus) values
**     p0 = "uniform" | "learn", q0 = "uniform" | "learn" | {w1, ..., wN} (fixed, sets of N rows), q0_hidden = 2 D,
**     output = "paper" | "reference", structure = "paper" | "reference",
**     compat = "none" | "reference", grad = "unrolled" | "implicit", debug = false, rng = g}
**   pool:plan([layout])    -> list of D x N plans, one per set (layout "rows": one rows x D tensor)
**   pool:values()          -> {a1 = tensor of T effective values (the value used at each iteration), ...}
**   pool:backward_plan(input, grad_plan) -> gradient w.r.t. the input from dL/dP (rows x D); params accumulate
**   pool:structure(input)  -> {c1 = {D x D ...}, c2 = {N x N ...}} of the last forward (alpha0 learned)
**   pool:debug_grads()     -> {c1 = {...}, c2 = {...}, x_partial = rows x D} after a backward (debug = true)
**   core.rotp_exp_pass(t)  -> t, with every value replaced by its exp (the solvers' exp kernel, all threads)
*/
#include <math.h>
#include <string.h>

#include "../core/pool/rotp.h"
#include "bind.h"

static const char *const alpha_names[RL_ROTP_NALPHA] = {"a0", "a1", "a2", "a3", "rho"};

static int ctor_error(lua_State *L, const char *msg) { return luaL_error(L, "bad argument #1 to 'rotp' (%s)", msg); }

static int alpha_index(const char *k) {
  for (int a = 0; a < RL_ROTP_NALPHA; a++)
    if (strcmp(k, alpha_names[a]) == 0) return a;
  return -1;
}

/* Reads table option `key` = {a1 = number, ...} calling fn for each entry. */
static void alpha_table(lua_State *L, const char *key, rl_rotp_config *c, int what) {
  if (!rlb_opt_present(L, 1, key)) return;
  lua_getfield(L, 1, key);
  if (!lua_istable(L, -1))
    ctor_error(L, lua_pushfstring(L, "option '%s': expected a table {a1 = value, ...}", key));
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int a = k ? alpha_index(k) : -1;
    if (a < 0)
      ctor_error(L, lua_pushfstring(L, "option '%s': unknown parameter '%s' (known: a0, a1, a2, a3, rho)", key,
                                    luaL_tolstring(L, -2, NULL)));
    int ok;
    lua_Number v = lua_tonumberx(L, -1, &ok);
    if (what == 2) { /* entries */
      lua_Integer e = lua_tointegerx(L, -1, &ok);
      if (!ok || e < 1) ctor_error(L, lua_pushfstring(L, "option 'entries': %s must be an integer >= 1", k));
      c->alpha[a].entries = (int64_t)e;
    } else {
      if (!ok || !isfinite(v)) ctor_error(L, lua_pushfstring(L, "option '%s': %s must be a finite number", key, k));
      if (what == 0) {
        if (!(v > 0)) ctor_error(L, lua_pushfstring(L, "option 'init': %s must be > 0 (a softplus value), got %f", k, v));
        c->alpha[a].init = v;
      } else {
        if (v < 0) ctor_error(L, lua_pushfstring(L, "option 'fixed': %s must be >= 0, got %f", k, v));
        c->alpha[a].mode = RL_ROTP_FIXED;
        c->alpha[a].value = v;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int l_pool_rotp(lua_State *L) {
  static const char *const known[] = {"dim",    "solver",    "iters",  "inner",  "alpha0", "shared", "entries",
                                      "init",   "fixed",     "p0",     "q0",     "q0_hidden", "output", "structure",
                                      "compat", "grad",      "debug",  "rng",    NULL};
  static const char *const solvers[] = {"sinkhorn", "badmm-e", "badmm-q", NULL};
  static const char *const priors[] = {"uniform", "learn", NULL};
  static const char *const outputs[] = {"paper", "reference", NULL};
  static const char *const compats[] = {"none", "reference", NULL};
  static const char *const grads[] = {"unrolled", "implicit", NULL};
  if (lua_type(L, 1) != LUA_TTABLE) return ctor_error(L, "expected an options table {dim = D, ...}");
  rlb_check_options(L, 1, "rotp", known);
  if (!rlb_opt_present(L, 1, "dim")) return ctor_error(L, "option 'dim' (the input width D) is required");
  lua_Integer dim = rlb_opt_integer(L, 1, "dim", 0);
  if (dim < 1) return ctor_error(L, lua_pushfstring(L, "option 'dim' must be >= 1, got %I", dim));
  rl_rotp_config c;
  rl_rotp_config_default(&c, (int64_t)dim);
  c.solver = rlb_opt_choice(L, 1, "solver", "sinkhorn", solvers);
  lua_Integer iters = rlb_opt_integer(L, 1, "iters", RL_ROTP_DEFAULT_ITERS);
  if (iters < 1 || iters > 100000) return ctor_error(L, lua_pushfstring(L, "option 'iters' must be >= 1, got %I", iters));
  c.iters = (int)iters;
  c.compat = rlb_opt_choice(L, 1, "compat", "none", compats);
  /* alpha0 */
  if (rlb_opt_present(L, 1, "alpha0")) {
    lua_getfield(L, 1, "alpha0");
    if (lua_type(L, -1) == LUA_TSTRING) {
      if (strcmp(lua_tostring(L, -1), "learn") != 0)
        return ctor_error(L, lua_pushfstring(L, "option 'alpha0': expected 0, \"learn\" or a fixed value > 0, got \"%s\"",
                                             lua_tostring(L, -1)));
      c.structure = 1;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number v = lua_tonumber(L, -1);
      if (!(v >= 0) || !isfinite(v))
        return ctor_error(L, lua_pushfstring(L, "option 'alpha0': a fixed alpha0 must be >= 0, got %f", v));
      if (v > 0) {
        c.structure = 1;
        c.alpha[RL_ROTP_A0].mode = RL_ROTP_FIXED;
        c.alpha[RL_ROTP_A0].value = v;
      }
    } else {
      return ctor_error(L, "option 'alpha0': expected 0, \"learn\" or a fixed value > 0");
    }
    lua_pop(L, 1);
  }
  /* the authors' structured Sinkhorn layer never runs the inner loop (golden README section 2) */
  lua_Integer inner = rlb_opt_integer(L, 1, "inner", c.compat ? 0 : RL_ROTP_DEFAULT_INNER);
  if (inner < 0) return ctor_error(L, lua_pushfstring(L, "option 'inner' must be >= 0, got %I", inner));
  if (rlb_opt_present(L, 1, "inner") && !(c.structure && c.solver == RL_ROTP_SINKHORN))
    return ctor_error(L, "option 'inner' only applies to solver = \"sinkhorn\" with alpha0 learned or fixed > 0 "
                         "(with alpha0 = 0 every iteration is one scaling step)");
  c.inner = (int)inner;
  if (rlb_opt_boolean(L, 1, "shared", 0))
    for (int a = 0; a < RL_ROTP_NALPHA; a++) c.alpha[a].entries = 1;
  if (rlb_opt_present(L, 1, "entries")) {
    lua_getfield(L, 1, "entries");
    if (lua_isinteger(L, -1)) {
      lua_Integer e = lua_tointeger(L, -1);
      if (e < 1) return ctor_error(L, "option 'entries' must be >= 1");
      for (int a = 0; a < RL_ROTP_NALPHA; a++) c.alpha[a].entries = (int64_t)e;
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
      alpha_table(L, "entries", &c, 2);
    }
  }
  alpha_table(L, "init", &c, 0);
  alpha_table(L, "fixed", &c, 1);
  c.p0_learn = rlb_opt_choice(L, 1, "p0", "uniform", priors);
  lua_getfield(L, 1, "q0");
  if (lua_istable(L, -1)) { /* a fixed prior {w1, ..., wN}; rl_pool_rotp_new checks the values */
    lua_Integer n = luaL_len(L, -1);
    if (n < 1 || n > RL_ROTP_Q0_FIXED_MAX) /* before filling the fixed-size array */
      return ctor_error(L, lua_pushfstring(L, "option 'q0': a fixed prior is a list of 1..%d weights, got %I entries",
                                           RL_ROTP_Q0_FIXED_MAX, n));
    for (lua_Integer i = 1; i <= n; i++) {
      int ok;
      lua_geti(L, -1, i);
      c.q0_fixed[i - 1] = lua_tonumberx(L, -1, &ok);
      if (!ok) return ctor_error(L, lua_pushfstring(L, "option 'q0': entry %I must be a finite number > 0", i));
      lua_pop(L, 1);
    }
    c.q0_n = (int64_t)n;
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    c.q0_learn = rlb_opt_choice(L, 1, "q0", "uniform", priors);
  }
  lua_Integer hid = rlb_opt_integer(L, 1, "q0_hidden", 2 * dim);
  if (hid < 1) return ctor_error(L, "option 'q0_hidden' must be >= 1");
  c.q0_hidden = (int64_t)hid;
  c.output = rlb_opt_choice(L, 1, "output", c.compat ? "reference" : "paper", outputs);
  c.structure_norm = rlb_opt_choice(L, 1, "structure", c.compat ? "reference" : "paper", outputs);
  c.grad = rlb_opt_choice(L, 1, "grad", "unrolled", grads);
  c.debug = rlb_opt_boolean(L, 1, "debug", 0);
  rl_rng *g = rlb_opt_rng(L, 1); /* pushed; used during construction only */
  rlb_module *u = rlb_newmodule(L);
  u->m = rl_pool_rotp_new(&c, g);
  if (!u->m) return luaL_error(L, "bad argument #1 to 'rotp' (%s)", rl_error());
  return 1;
}

static rl_module *check_rotp(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  if (!rl_rotp_config_of(m)) luaL_argerror(L, 1, "expected a rotp module");
  return m;
}

/* Pushes a d x n (transposed) or n x d copy of an n x d block. */
static void push_block(lua_State *L, const real *p, int64_t n, int64_t d, int transpose) {
  rlb_tensor *t = transpose ? rlb_newmatrix(L, d, n) : rlb_newmatrix(L, n, d);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < d; j++) {
      if (transpose)
        t->t.data[j * n + i] = p[i * d + j];
      else
        t->t.data[i * d + j] = p[i * d + j];
    }
}

static int rotp_plan(lua_State *L) {
  rl_module *m = check_rotp(L);
  const char *layout = luaL_optstring(L, 2, "sets");
  int rows = strcmp(layout, "rows") == 0;
  if (!rows && strcmp(layout, "sets") != 0)
    return luaL_argerror(L, 2, "expected \"sets\" (a list of D x N plans) or \"rows\" (one rows x D tensor)");
  if (!m->has_forward) return luaL_error(L, "rotp: plan() called before forward");
  int64_t n, d;
  if (rows) {
    int64_t total = m->forward_rows;
    const real *p0 = rl_rotp_plan(m, 0, &n, &d);
    push_block(L, p0, total, d, 0);
    return 1;
  }
  lua_createtable(L, (int)m->forward_sets, 0);
  for (int64_t s = 0; s < m->forward_sets; s++) {
    const real *p = rl_rotp_plan(m, s, &n, &d);
    push_block(L, p, n, d, 1);
    lua_rawseti(L, -2, (lua_Integer)s + 1);
  }
  return 1;
}

static int rotp_values(lua_State *L) {
  rl_module *m = check_rotp(L);
  const rl_rotp_config *c = rl_rotp_config_of(m);
  lua_newtable(L);
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    if (c->alpha[a].mode == RL_ROTP_UNUSED) continue;
    int64_t shape[1] = {c->iters};
    rlb_tensor *t = rlb_newtensor(L, 1, shape);
    for (int k = 0; k < c->iters; k++) t->t.data[k] = (real)rl_rotp_value(m, a, k);
    lua_setfield(L, -2, alpha_names[a]);
  }
  return 1;
}

static int rotp_backward_plan(lua_State *L) {
  rl_module *m = check_rotp(L);
  rl_batch in;
  rlb_checkbatch(L, 2, &in);
  rlb_tensor *gp = rlb_checktensorlike(L, 3);
  rlb_tensor *g = rlb_newtensor(L, in.values.ndim, in.values.shape);
  if (rl_rotp_backward_plan(m, &in, &gp->t, &g->t)) return rlb_error(L);
  return 1;
}

static int rotp_structure(lua_State *L) {
  rl_module *m = check_rotp(L);
  rl_batch in;
  rlb_checkbatch(L, 2, &in);
  const rl_rotp_config *c = rl_rotp_config_of(m);
  if (!c->structure) return luaL_error(L, "rotp: structure() needs alpha0 learned or fixed > 0");
  if (!m->has_forward || in.nlevels < 1 || in.count[0] != m->forward_sets || rl_rows(&in.values) != m->forward_rows)
    return luaL_error(L, "rotp: structure() needs the batch of the last forward");
  int64_t D = c->dim, B = in.count[0];
  lua_createtable(L, 0, 2);
  lua_createtable(L, (int)B, 0);
  for (int64_t s = 0; s < B; s++) {
    rlb_tensor *t = rlb_newmatrix(L, D, D);
    memcpy(t->t.data, rl_rotp_c1(m, s), (size_t)(D * D) * sizeof(real));
    lua_rawseti(L, -2, (lua_Integer)s + 1);
  }
  lua_setfield(L, -2, "c1");
  lua_createtable(L, (int)B, 0);
  for (int64_t s = 0; s < B; s++) {
    int64_t n = rl_set_size(&in, s);
    rlb_tensor *t = rlb_newmatrix(L, n, n);
    if (rl_rotp_c2(m, &in, s, t->t.data)) return rlb_error(L);
    lua_rawseti(L, -2, (lua_Integer)s + 1);
  }
  lua_setfield(L, -2, "c2");
  return 1;
}

static int rotp_debug_grads(lua_State *L) {
  rl_module *m = check_rotp(L);
  const rl_rotp_config *c = rl_rotp_config_of(m);
  const real *xp = rl_rotp_debug_xpartial(m);
  if (!xp) return luaL_error(L, "rotp: debug_grads() needs debug = true and a backward");
  int64_t D = c->dim, B = m->forward_sets;
  lua_createtable(L, 0, 3);
  push_block(L, xp, m->forward_rows, D, 0);
  lua_setfield(L, -2, "x_partial");
  if (c->structure) {
    lua_createtable(L, (int)B, 0);
    for (int64_t s = 0; s < B; s++) {
      push_block(L, rl_rotp_debug_gc1(m, s), D, D, 0);
      lua_rawseti(L, -2, (lua_Integer)s + 1);
    }
    lua_setfield(L, -2, "c1");
    lua_createtable(L, (int)B, 0);
    for (int64_t s = 0; s < B; s++) {
      int64_t n, d;
      rl_rotp_plan(m, s, &n, &d);
      push_block(L, rl_rotp_debug_gc2(m, s), n, n, 0);
      lua_rawseti(L, -2, (lua_Integer)s + 1);
    }
    lua_setfield(L, -2, "c2");
  }
  return 1;
}

static int l_rotp_exp_pass(lua_State *L) {
  rlb_tensor *t = rlb_checktensor(L, 1);
  rl_rotp_exp_pass(t->t.numel, t->t.data, t->t.data);
  lua_settop(L, 1);
  return 1;
}

int rlb_open_rotp(lua_State *L) {
  static const luaL_Reg methods[] = {{"plan", rotp_plan},
                                     {"values", rotp_values},
                                     {"backward_plan", rotp_backward_plan},
                                     {"structure", rotp_structure},
                                     {"debug_grads", rotp_debug_grads},
                                     {NULL, NULL}};
  rlb_register_methods(L, "rotp", methods);
  static const luaL_Reg fns[] = {{"pool_rotp", l_pool_rotp}, {"rotp_exp_pass", l_rotp_exp_pass}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
