/*
** bind_baselines.c -- Lua binding of the baseline poolings of core/pool (mixed.c, deepset.c, set2set.c,
** gated_attention.c, dynamic.c, gnp.c). Each constructor takes one options table and is registered as
** core.pool_<name> (lua/rotlab/pool.lua exports it as rl.pool.<name>):
**   pool_mixed{[dim = D,] [compat = "paper" | "reference",] [rng = g]}        (dim absent = any width)
**   pool_gated_mixed{dim = D, [compat,] [rng]}
**   pool_deepset{dim = D, [hidden = D,] [compat,] [rng]}
**   pool_set2set{dim = D, [steps = 3,] [compat,] [rng]}                      (output width 2 D)
**   pool_gated_attention{dim = D, [hidden = 128,] [compat,] [rng]}
**   pool_dynamic{[dim = D,] [k = 3,] [compat]}                               (no parameters)
**   pool_gnp{dim = D, [compat,] [rng]}
** compat = "reference" reproduces the authors' code (golden/README.md section 6, item 10); the default "paper"
** follows the papers. Extra methods: gated_attention and dynamic pool:weights() (the attention/routing weight of
** every row of the last forward); gnp pool:values([rows]) -> {p = {p1, p2}, q = {q1, q2}, split = S} (the
** effective exponents and the number of features in the first block for a batch of `rows` rows).
*/
#include "../core/pool/deepset.h"
#include "../core/pool/dynamic.h"
#include "../core/pool/gated_attention.h"
#include "../core/pool/gnp.h"
#include "../core/pool/mixed.h"
#include "../core/pool/set2set.h"
#include "../core/pool/setops.h"
#include "bind.h"

/* Defaults of the optional sizes (documented above). */
#define RLB_SET2SET_STEPS 3          /* the golden Set2Set cases use 3 processing steps */
#define RLB_DYNAMIC_K 3              /* Yan et al. and the reference use 3 routing iterations */
#define RLB_GATED_ATTENTION_HIDDEN 128 /* Ilse et al. use 128 hidden units */

static const char *const compat_names[] = {"paper", "reference", NULL};

static int ctor_argerror(lua_State *L, const char *fname, const char *msg) {
  return luaL_error(L, "bad argument #1 to '%s' (%s)", fname, msg);
}

/* Checks the options table (required unless `optional`) against the known names. */
static void check_ctor_options(lua_State *L, const char *fname, const char *const *known, int optional,
                               const char *usage) {
  if (lua_isnoneornil(L, 1) && optional) return;
  if (lua_type(L, 1) != LUA_TTABLE)
    ctor_argerror(L, fname, lua_pushfstring(L, "expected an options table %s, got %s", usage, luaL_typename(L, 1)));
  rlb_check_options(L, 1, fname, known);
}

/* The integer option `key` (def when absent); `required` raises when absent. Range checks are left to core,
** except for widths, which must be positive. */
static int64_t opt_int(lua_State *L, const char *fname, const char *key, int64_t def, int required, int width) {
  if (!rlb_opt_present(L, 1, key)) {
    if (required)
      ctor_argerror(L, fname, lua_pushfstring(L, "option '%s' (the input width) is required", key));
    return def;
  }
  lua_getfield(L, 1, key);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || (width && v < 1))
    ctor_argerror(L, fname, lua_pushfstring(L, "option '%s': expected %s, got %s", key,
                                            width ? "a positive width" : "an integer", luaL_tolstring(L, -1, NULL)));
  lua_pop(L, 1);
  return (int64_t)v;
}

static int opt_compat(lua_State *L) {
  return rlb_opt_choice(L, 1, "compat", "paper", compat_names) ? RL_COMPAT_REFERENCE : RL_COMPAT_PAPER;
}

/* Stores m in the handle on top of the stack, or raises the core error as an argument error. */
static int finish(lua_State *L, const char *fname, rlb_module *u, rl_module *m) {
  if (!m) return ctor_argerror(L, fname, rl_error());
  u->m = m;
  return 1;
}

static int l_pool_mixed(lua_State *L) {
  static const char *const known[] = {"dim", "compat", "rng", NULL};
  check_ctor_options(L, "mixed", known, 1, "{[dim = D, compat = \"paper\" | \"reference\", rng = g]}");
  int64_t dim = opt_int(L, "mixed", "dim", -1, 0, 1);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, lua_istable(L, 1) ? 1 : 0);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "mixed", u, rl_pool_mixed_new(dim, compat, g));
}

static int l_pool_gated_mixed(lua_State *L) {
  static const char *const known[] = {"dim", "compat", "rng", NULL};
  check_ctor_options(L, "gated_mixed", known, 0, "{dim = D [, compat, rng]}");
  int64_t dim = opt_int(L, "gated_mixed", "dim", -1, 1, 1);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "gated_mixed", u, rl_pool_gated_mixed_new(dim, compat, g));
}

static int l_pool_deepset(lua_State *L) {
  static const char *const known[] = {"dim", "hidden", "compat", "rng", NULL};
  check_ctor_options(L, "deepset", known, 0, "{dim = D [, hidden = H, compat, rng]}");
  int64_t dim = opt_int(L, "deepset", "dim", -1, 1, 1);
  int64_t hidden = opt_int(L, "deepset", "hidden", dim, 0, 1);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "deepset", u, rl_pool_deepset_new(dim, hidden, compat, g));
}

static int l_pool_set2set(lua_State *L) {
  static const char *const known[] = {"dim", "steps", "compat", "rng", NULL};
  check_ctor_options(L, "set2set", known, 0, "{dim = D [, steps = T, compat, rng]}");
  int64_t dim = opt_int(L, "set2set", "dim", -1, 1, 1);
  int64_t steps = opt_int(L, "set2set", "steps", RLB_SET2SET_STEPS, 0, 0);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "set2set", u, rl_pool_set2set_new(dim, steps, compat, g));
}

static int l_pool_gated_attention(lua_State *L) {
  static const char *const known[] = {"dim", "hidden", "compat", "rng", NULL};
  check_ctor_options(L, "gated_attention", known, 0, "{dim = D [, hidden = H, compat, rng]}");
  int64_t dim = opt_int(L, "gated_attention", "dim", -1, 1, 1);
  int64_t hidden = opt_int(L, "gated_attention", "hidden", RLB_GATED_ATTENTION_HIDDEN, 0, 1);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "gated_attention", u, rl_pool_gated_attention_new(dim, hidden, compat, g));
}

static int l_pool_dynamic(lua_State *L) {
  static const char *const known[] = {"dim", "k", "compat", NULL};
  check_ctor_options(L, "dynamic", known, 1, "{[dim = D, k = 3, compat]}");
  int64_t dim = opt_int(L, "dynamic", "dim", -1, 0, 1);
  int64_t k = opt_int(L, "dynamic", "k", RLB_DYNAMIC_K, 0, 0);
  int compat = opt_compat(L);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "dynamic", u, rl_pool_dynamic_new(dim, k, compat));
}

static int l_pool_gnp(lua_State *L) {
  static const char *const known[] = {"dim", "compat", "rng", NULL};
  check_ctor_options(L, "gnp", known, 0, "{dim = D [, compat, rng]}");
  int64_t dim = opt_int(L, "gnp", "dim", -1, 1, 1);
  int compat = opt_compat(L);
  rl_rng *g = rlb_opt_rng(L, 1);
  rlb_module *u = rlb_newmodule(L);
  return finish(L, "gnp", u, rl_pool_gnp_new(dim, compat, g));
}

/* pool:weights() -> 1-D tensor with the weight of every row of the last forward */
static int push_weights(lua_State *L, const char *kind, const real *(*get)(const rl_module *, int64_t *)) {
  rl_module *m = rlb_checkmodule(L, 1);
  int64_t rows = 0;
  const real *a = get(m, &rows);
  if (!a) return luaL_error(L, "%s: weights() called before forward", kind);
  int64_t shape[1] = {rows};
  rlb_tensor *t = rlb_newtensor(L, 1, shape);
  for (int64_t i = 0; i < rows; i++) t->t.data[i] = a[i];
  return 1;
}
static int gated_attention_weights(lua_State *L) {
  return push_weights(L, "gated_attention", rl_pool_gated_attention_weights);
}
static int dynamic_weights(lua_State *L) { return push_weights(L, "dynamic", rl_pool_dynamic_weights); }

static void push_pair(lua_State *L, const double v[2]) {
  lua_createtable(L, 2, 0);
  for (int i = 0; i < 2; i++) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* gnp pool:values([rows]) -> {p = {..}, q = {..}, split = S} (split is nil in reference mode without rows) */
static int gnp_values(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  lua_Integer rows = luaL_optinteger(L, 2, -1);
  luaL_argcheck(L, rows >= -1, 2, "expected a non-negative row count");
  double p[2], q[2];
  int64_t split;
  if (rl_pool_gnp_values(m, (int64_t)rows, p, q, &split)) return rlb_argerror(L, 1);
  lua_createtable(L, 0, 3);
  push_pair(L, p);
  lua_setfield(L, -2, "p");
  push_pair(L, q);
  lua_setfield(L, -2, "q");
  if (split >= 0) {
    lua_pushinteger(L, (lua_Integer)split);
    lua_setfield(L, -2, "split");
  }
  return 1;
}

int rlb_open_baselines(lua_State *L) {
  static const luaL_Reg gated_attention_methods[] = {{"weights", gated_attention_weights}, {NULL, NULL}};
  static const luaL_Reg dynamic_methods[] = {{"weights", dynamic_weights}, {NULL, NULL}};
  static const luaL_Reg gnp_methods[] = {{"values", gnp_values}, {NULL, NULL}};
  rlb_register_methods(L, "gated_attention", gated_attention_methods);
  rlb_register_methods(L, "dynamic", dynamic_methods);
  rlb_register_methods(L, "gnp", gnp_methods);
  static const luaL_Reg fns[] = {{"pool_mixed", l_pool_mixed},
                                 {"pool_gated_mixed", l_pool_gated_mixed},
                                 {"pool_deepset", l_pool_deepset},
                                 {"pool_set2set", l_pool_set2set},
                                 {"pool_gated_attention", l_pool_gated_attention},
                                 {"pool_dynamic", l_pool_dynamic},
                                 {"pool_gnp", l_pool_gnp},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
