/*
** bind_pool.c -- Lua binding of core/pool: one constructor per pooling, registered as core.pool_<name> and each
** taking one options table (lua/rotlab/pool.lua exports them as rl.pool.<name>):
**   pool_add{dim = D?}, pool_mean{dim = D?}, pool_max{dim = D?}      (dim absent = any width)
**   pool_attention{dim = D, hidden = 128, rng = g}                   (dim required)
** Attention modules also get pool:weights() -> the attention weight of every row of the last forward.
*/
#include "../core/pool/attention.h"
#include "../core/pool/basic.h"
#include "bind.h"

/* Default hidden width of attention pooling (Ilse et al. use 128). */
#define RLB_ATTENTION_HIDDEN 128

static int ctor_argerror(lua_State *L, const char *fname, const char *msg) {
  return luaL_error(L, "bad argument #1 to '%s' (%s)", fname, msg);
}

/* Reads the positive integer option `key` (def when absent; -1 stays "any"). */
static int64_t opt_width(lua_State *L, const char *fname, const char *key, int64_t def) {
  if (!rlb_opt_present(L, 1, key)) return def;
  lua_getfield(L, 1, key);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < 1)
    ctor_argerror(L, fname, lua_pushfstring(L, "option '%s': expected a positive width, got %s", key,
                                            luaL_tolstring(L, -1, NULL)));
  lua_pop(L, 1);
  return (int64_t)v;
}

static int finish_module(lua_State *L, rlb_module *u, rl_module *m) {
  if (!m) return rlb_error(L);
  u->m = m;
  return 1;
}

static int basic_pool(lua_State *L, const char *fname, rl_module *(*ctor)(int64_t)) {
  static const char *const known[] = {"dim", NULL};
  rlb_check_options(L, 1, fname, known);
  int64_t dim = opt_width(L, fname, "dim", -1);
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, ctor(dim));
}

static int l_pool_add(lua_State *L) { return basic_pool(L, "add", rl_pool_add_new); }
static int l_pool_mean(lua_State *L) { return basic_pool(L, "mean", rl_pool_mean_new); }
static int l_pool_max(lua_State *L) { return basic_pool(L, "max", rl_pool_max_new); }

static int l_pool_attention(lua_State *L) {
  static const char *const known[] = {"dim", "hidden", "rng", NULL};
  if (lua_type(L, 1) != LUA_TTABLE)
    return ctor_argerror(L, "attention", "expected an options table {dim = D [, hidden = H, rng = g]}");
  rlb_check_options(L, 1, "attention", known);
  if (!rlb_opt_present(L, 1, "dim"))
    return ctor_argerror(L, "attention", "option 'dim' (the input width) is required");
  int64_t dim = opt_width(L, "attention", "dim", -1);
  int64_t hidden = opt_width(L, "attention", "hidden", RLB_ATTENTION_HIDDEN);
  rl_rng *g = rlb_opt_rng(L, 1); /* pushed; only used during construction */
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, rl_pool_attention_new(dim, hidden, g));
}

/* pool:weights() -> 1-D tensor of the attention weight of every row of the last forward */
static int attention_weights(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  int64_t rows = 0;
  const real *a = rl_pool_attention_weights(m, &rows);
  if (!a) return luaL_error(L, "attention: weights() called before forward");
  int64_t shape[1] = {rows};
  rlb_tensor *t = rlb_newtensor(L, 1, shape);
  for (int64_t i = 0; i < rows; i++) t->t.data[i] = a[i];
  return 1;
}

int rlb_open_pool(lua_State *L) {
  static const luaL_Reg attention_methods[] = {{"weights", attention_weights}, {NULL, NULL}};
  rlb_register_methods(L, "attention", attention_methods);
  static const luaL_Reg fns[] = {{"pool_add", l_pool_add},
                                 {"pool_mean", l_pool_mean},
                                 {"pool_max", l_pool_max},
                                 {"pool_attention", l_pool_attention},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
