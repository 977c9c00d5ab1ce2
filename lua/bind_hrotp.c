/*
** bind_hrotp.c -- Lua binding of core/pool/hrotp: the constructor core.pool_hrotp{...} (rl.pool.hrotp) and the
** hrotp-only methods.
**
**   rl.pool.hrotp{dim = D,                        -- required, the input width
**     mode = "mixed" | "fusion",                  -- eq. 13 (sets -> B x D) or eq. 14 (groups of sets -> G x D')
**     heads = M,                                  -- mixed: number of heads (default 2, or #head for a list)
**     head = {rotp options} | { {...}, ... },     -- every head's options, or one table per head (mixed);
**                                                 -- fusion: the lower ROTP's options (one table)
**     top = {rotp options},                       -- the top ROTP (its dim follows D, or g's output width D')
**     g = module,                                 -- fusion only: a row-wise module or rl.nn.Sequential of them
**     rng = g}                                    -- initialises every part (a head or top table may give its own)
**   The head/top tables take the options of rl.pool.rotp (solver, iters, alpha0, init, fixed, q0, ...); their dim may
**   be left out (it must match when given). The parts are built by rl.pool.rotp itself, so they are validated with
**   its messages. The modules given as g are MOVED into the pool: their handles (and a Sequential's children) are
**   emptied and raise "module has been freed" when used; reach their parameters as pool:param("g.weight"), or
**   "g.1.weight" for the first module of a Sequential ("g.1.2.weight" nested), as Sequential:parameters() names them.
**   Parameters: "head1.a1" ... "headM.q0.w" (mixed), "head.a1" (fusion's lower ROTP), "top.a1", then g's.
**
**   pool:mode() -> "mixed" | "fusion";  pool:heads() -> M
**   pool:values() -> {head1 = {a1 = tensor of T effective values, ...}, ..., top = {...}} (fusion: head, top)
**   pool:plan([part = "top"]) -> the part's plans of the last forward, one D x N tensor per set ("head2", ...)
**   pool:top_input() -> the batch the top pooled in the last forward (rl.sets: copied values and offsets)
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/pool/hrotp.h"
#include "bind.h"

#define RLB_SEQUENTIAL "rotlab.Sequential" /* lua/rotlab/nn.lua */
#define RLB_HROTP_MAX_DEPTH 16             /* nesting of Sequentials accepted in g */

static const char *const alpha_names[RL_ROTP_NALPHA] = {"a0", "a1", "a2", "a3", "rho"};

static int ctor_error(lua_State *L, const char *msg) { return luaL_error(L, "bad argument #1 to 'hrotp' (%s)", msg); }

/* A raw buffer owned by the Lua stack (freed by the GC even when an error unwinds). */
static void *stack_buffer(lua_State *L, size_t n, size_t size) {
  void *p = lua_newuserdatauv(L, (n ? n : 1) * size, 0);
  memset(p, 0, (n ? n : 1) * size);
  return p;
}

/* Builds one ROTP with core.pool_rotp (upvalue 1) from the options table at idx (0: none), with dim and the rng at
** rng_idx filled in. what names the table in messages. Pushes the module. */
static rlb_module *build_rotp(lua_State *L, int idx, int64_t dim, int rng_idx, const char *what, const char *dim_of) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_newtable(L);
  int t = lua_gettop(L);
  if (idx) {
    if (lua_type(L, idx) != LUA_TTABLE)
      ctor_error(L, lua_pushfstring(L, "option '%s': expected a table of rotp options, got %s", what,
                                    luaL_typename(L, idx)));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, t);
    }
  }
  lua_getfield(L, t, "dim");
  if (!lua_isnil(L, -1)) {
    int ok;
    lua_Integer d = lua_tointegerx(L, -1, &ok);
    if (!ok || d != dim)
      ctor_error(L, lua_pushfstring(L, "option '%s': dim = %s does not match %s (%d); leave it out", what,
                                    luaL_tolstring(L, -1, NULL), dim_of, (int)dim));
  }
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)dim);
  lua_setfield(L, t, "dim");
  if (lua_getfield(L, t, "rng") == LUA_TNIL) {
    lua_pushvalue(L, rng_idx);
    lua_setfield(L, t, "rng");
  }
  lua_pop(L, 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = luaL_tolstring(L, -1, NULL);
    static const char prefix[] = "bad argument #1 to 'rotp' (";
    size_t n = strlen(msg), np = sizeof prefix - 1;
    if (n > np && strncmp(msg, prefix, np) == 0 && msg[n - 1] == ')') /* drop the inner wrapper */
      msg = lua_pushlstring(L, msg + np, n - np - 1);
    ctor_error(L, lua_pushfstring(L, "%s options: %s", what, msg));
  }
  rlb_module *u = luaL_testudata(L, -1, RLB_MODULE);
  if (!u || !u->m) ctor_error(L, lua_pushfstring(L, "%s options: rotp did not return a module", what));
  return u;
}

/* 1 if the value at idx is an rl.nn.Sequential (its metatable's __name). */
static int is_sequential(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  lua_getfield(L, -1, "__name");
  int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), RLB_SEQUENTIAL) == 0;
  lua_pop(L, 2);
  return yes;
}

/* Flattens g (at idx) into the lists at mods (module userdata) and names (parameter prefixes). */
static void collect_g(lua_State *L, int idx, const char *prefix, int depth, int mods, int names) {
  idx = lua_absindex(L, idx);
  rlb_module *u = luaL_testudata(L, idx, RLB_MODULE);
  if (u) {
    if (!u->m)
      ctor_error(L, lua_pushfstring(L, "option 'g': module %s has been freed (or moved into another module)", prefix));
    if (u->m->pools)
      ctor_error(L, lua_pushfstring(L, "option 'g': %s is a pooling (%s); g must map rows to rows (Linear, "
                                       "activations, Dropout, Sequential of those)", prefix, u->m->ops->kind));
    int n = (int)lua_rawlen(L, mods);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, mods, i);
      int same = lua_touserdata(L, -1) == (void *)u;
      lua_pop(L, 1);
      if (same) {
        lua_rawgeti(L, names, i);
        ctor_error(L, lua_pushfstring(L, "option 'g': the module at %s is also at %s (a module can appear once)",
                                      prefix, lua_tostring(L, -1)));
      }
    }
    lua_pushvalue(L, idx);
    lua_rawseti(L, mods, n + 1);
    lua_pushstring(L, prefix);
    lua_rawseti(L, names, n + 1);
    return;
  }
  if (!is_sequential(L, idx)) {
    if (lua_type(L, idx) == LUA_TTABLE)
      ctor_error(L, lua_pushfstring(L, "option 'g': %s is a Lua table that is not an rl.nn.Sequential (g runs in C: "
                                       "it must be a rotlab module or a Sequential of them)", prefix));
    ctor_error(L, lua_pushfstring(L, "option 'g': expected a module (rotlab module or rl.nn.Sequential), got %s at %s",
                                  luaL_typename(L, idx), prefix));
  }
  if (depth >= RLB_HROTP_MAX_DEPTH)
    ctor_error(L, lua_pushfstring(L, "option 'g': Sequentials nested deeper than %d", RLB_HROTP_MAX_DEPTH));
  if (lua_getfield(L, idx, "modules") != LUA_TTABLE)
    ctor_error(L, lua_pushfstring(L, "option 'g': the Sequential at %s has no module list", prefix));
  int list = lua_gettop(L);
  int n = (int)lua_rawlen(L, list);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    const char *child = lua_pushfstring(L, "%s.%d", prefix, i);
    collect_g(L, -2, child, depth + 1, mods, names);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

static int l_pool_hrotp(lua_State *L) {
  static const char *const known[] = {"dim", "mode", "heads", "head", "top", "g", "rng", NULL};
  static const char *const modes[] = {"mixed", "fusion", NULL};
  if (lua_type(L, 1) != LUA_TTABLE) return ctor_error(L, "expected an options table {dim = D, mode = ..., ...}");
  lua_settop(L, 1);
  rlb_check_options(L, 1, "hrotp", known);
  if (!rlb_opt_present(L, 1, "dim")) return ctor_error(L, "option 'dim' (the input width D) is required");
  lua_Integer dim = rlb_opt_integer(L, 1, "dim", 0);
  if (dim < 1) return ctor_error(L, lua_pushfstring(L, "option 'dim' must be >= 1, got %I", dim));
  int mode = rlb_opt_choice(L, 1, "mode", "mixed", modes);
  /* head: one options table, or a list of them (mixed) */
  lua_getfield(L, 1, "head");
  int head_idx = lua_gettop(L);
  int head_list = 0;
  if (!lua_isnil(L, head_idx)) {
    if (lua_type(L, head_idx) != LUA_TTABLE)
      return ctor_error(L, lua_pushfstring(L, "option 'head': expected a table of rotp options (or a list of them), "
                                              "got %s", luaL_typename(L, head_idx)));
    head_list = lua_rawlen(L, head_idx) > 0;
    if (head_list) {
      lua_pushnil(L);
      while (lua_next(L, head_idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1))
          return ctor_error(L, "option 'head': mixes a list of per-head tables with named options (give either "
                               "{iters = 4, ...} for every head or {{...}, {...}} one per head)");
      }
    }
  }
  lua_Integer M = head_list ? (lua_Integer)lua_rawlen(L, head_idx) : RL_HROTP_DEFAULT_HEADS;
  if (M > RL_HROTP_MAX_HEADS)
    return ctor_error(L, lua_pushfstring(L, "option 'head' lists %I tables, more than %d heads", M, RL_HROTP_MAX_HEADS));
  if (rlb_opt_present(L, 1, "heads")) {
    if (mode == RL_HROTP_FUSION)
      return ctor_error(L, "option 'heads' only applies to mode = \"mixed\" (fusion pools every set with one lower "
                           "ROTP, option 'head')");
    lua_Integer h = rlb_opt_integer(L, 1, "heads", M);
    if (h < 1 || h > RL_HROTP_MAX_HEADS)
      return ctor_error(L, lua_pushfstring(L, "option 'heads' must be 1..%d, got %I", RL_HROTP_MAX_HEADS, h));
    if (head_list && h != M)
      return ctor_error(L, lua_pushfstring(L, "option 'heads' = %I but option 'head' lists %I tables", h, M));
    M = h;
  }
  if (mode == RL_HROTP_FUSION) {
    if (head_list)
      return ctor_error(L, "option 'head': fusion has one lower ROTP; give one table of rotp options, not a list");
    M = 1;
  }
  if (mode == RL_HROTP_MIXED && rlb_opt_present(L, 1, "g"))
    return ctor_error(L, "option 'g' only applies to mode = \"fusion\" (eq. 14: g maps the pooled sets before the "
                         "top ROTP)");
  lua_getfield(L, 1, "top");
  int top_idx = lua_gettop(L);
  if (!lua_isnil(L, top_idx) && lua_type(L, top_idx) != LUA_TTABLE)
    return ctor_error(L, lua_pushfstring(L, "option 'top': expected a table of rotp options, got %s",
                                         luaL_typename(L, top_idx)));
  rlb_opt_rng(L, 1);
  int rng_idx = lua_gettop(L);

  /* g (fusion): flatten into module and name lists, then the width the top pools */
  lua_newtable(L);
  int gmods = lua_gettop(L);
  lua_newtable(L);
  int gnames = lua_gettop(L);
  lua_getfield(L, 1, "g");
  if (!lua_isnil(L, -1)) collect_g(L, -1, "g", 0, gmods, gnames);
  lua_pop(L, 1);
  int ng = (int)lua_rawlen(L, gmods);
  rlb_module **gu = stack_buffer(L, (size_t)ng, sizeof *gu);
  rl_module **gm = stack_buffer(L, (size_t)ng, sizeof *gm);
  const char **gn = stack_buffer(L, (size_t)ng, sizeof *gn);
  for (int k = 0; k < ng; k++) {
    lua_rawgeti(L, gmods, k + 1);
    gu[k] = lua_touserdata(L, -1);
    gm[k] = gu[k]->m;
    lua_pop(L, 1);
    lua_rawgeti(L, gnames, k + 1);
    gn[k] = lua_tostring(L, -1); /* the names table keeps it alive */
    lua_pop(L, 1);
  }
  int64_t width = (int64_t)dim;
  if (rl_hrotp_chain_width(ng, gm, (int64_t)dim, &width)) return ctor_error(L, rl_error());

  /* the ROTP parts, each built (and validated) by rl.pool.rotp */
  rlb_module **hu = stack_buffer(L, (size_t)M, sizeof *hu);
  rl_module **hm = stack_buffer(L, (size_t)M, sizeof *hm);
  lua_newtable(L);
  int parts = lua_gettop(L); /* keeps the built parts alive until they are moved */
  for (int i = 0; i < M; i++) {
    int opts = 0;
    const char *what = "head";
    if (head_list) {
      lua_rawgeti(L, head_idx, i + 1);
      opts = lua_gettop(L);
      what = lua_pushfstring(L, "head[%d]", i + 1);
    } else if (!lua_isnil(L, head_idx)) {
      opts = head_idx;
    }
    hu[i] = build_rotp(L, opts, (int64_t)dim, rng_idx, what, "option 'dim'");
    lua_rawseti(L, parts, i + 1);
    if (head_list) lua_pop(L, 2);
  }
  rlb_module *tu = build_rotp(L, lua_isnil(L, top_idx) ? 0 : top_idx, width, rng_idx, "top",
                              ng ? "the output width of g" : "option 'dim'");
  lua_rawseti(L, parts, M + 1);

  /* the pool: keeps g's emptied handles (and what they keep alive, e.g. Dropout's rng) */
  rlb_module *u = rlb_newmodule(L);
  int self = lua_gettop(L);
  for (int k = 0; k < ng; k++) {
    lua_rawgeti(L, gmods, k + 1);
    rlb_keep(L, self, -1);
    lua_pop(L, 1);
  }
  /* move every part into the core module: no Lua call from here to the end */
  for (int i = 0; i < M; i++) {
    hm[i] = hu[i]->m;
    hu[i]->m = NULL;
  }
  for (int k = 0; k < ng; k++) gu[k]->m = NULL;
  rl_hrotp_parts p;
  memset(&p, 0, sizeof p);
  p.mode = mode;
  p.heads = (int)M;
  p.head = hm;
  p.top = tu->m;
  tu->m = NULL;
  p.ng = ng;
  p.g = gm;
  p.gname = gn;
  u->m = rl_pool_hrotp_new(&p); /* owns the parts, also when it fails */
  if (!u->m) return ctor_error(L, rl_error());
  return 1;
}

static rl_module *check_hrotp(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  if (rl_hrotp_mode(m) < 0) luaL_argerror(L, 1, "expected an hrotp module");
  return m;
}

static int hrotp_mode(lua_State *L) {
  lua_pushstring(L, rl_hrotp_mode(check_hrotp(L)) == RL_HROTP_FUSION ? "fusion" : "mixed");
  return 1;
}

static int hrotp_heads(lua_State *L) {
  lua_pushinteger(L, rl_hrotp_heads(check_hrotp(L)));
  return 1;
}

/* Pushes {a1 = tensor of T effective values, ...} of a ROTP part. */
static void push_values(lua_State *L, const rl_module *r) {
  const rl_rotp_config *c = rl_rotp_config_of(r);
  lua_newtable(L);
  for (int a = 0; a < RL_ROTP_NALPHA; a++) {
    if (c->alpha[a].mode == RL_ROTP_UNUSED) continue;
    int64_t shape[1] = {c->iters};
    rlb_tensor *t = rlb_newtensor(L, 1, shape);
    for (int k = 0; k < c->iters; k++) t->t.data[k] = (real)rl_rotp_value(r, a, k);
    lua_setfield(L, -2, alpha_names[a]);
  }
}

static int hrotp_values(lua_State *L) {
  rl_module *m = check_hrotp(L);
  int M = rl_hrotp_heads(m), fusion = rl_hrotp_mode(m) == RL_HROTP_FUSION;
  lua_newtable(L);
  for (int i = 0; i < M; i++) {
    char key[32];
    snprintf(key, sizeof key, fusion ? "head" : "head%d", i + 1);
    push_values(L, rl_hrotp_head(m, i));
    lua_setfield(L, -2, key);
  }
  push_values(L, rl_hrotp_top(m));
  lua_setfield(L, -2, "top");
  return 1;
}

/* The ROTP part named at idx ("top", "head", "head<i>"). */
static rl_module *check_part(lua_State *L, rl_module *m, int idx) {
  const char *name = luaL_optstring(L, idx, "top");
  int M = rl_hrotp_heads(m), fusion = rl_hrotp_mode(m) == RL_HROTP_FUSION;
  if (strcmp(name, "top") == 0) return rl_hrotp_top(m);
  if (fusion && strcmp(name, "head") == 0) return rl_hrotp_head(m, 0);
  if (!fusion && strncmp(name, "head", 4) == 0) {
    char *end;
    long i = strtol(name + 4, &end, 10);
    if (name[4] && !*end && i >= 1 && i <= M) return rl_hrotp_head(m, (int)i - 1);
  }
  luaL_argerror(L, idx, fusion ? lua_pushstring(L, "expected \"top\" or \"head\"")
                               : lua_pushfstring(L, "expected \"top\" or \"head1\"..\"head%d\"", M));
  return NULL;
}

static int hrotp_plan(lua_State *L) {
  rl_module *m = check_hrotp(L);
  rl_module *r = check_part(L, m, 2);
  if (!m->has_forward || !r->has_forward) return luaL_error(L, "hrotp: plan() called before forward");
  lua_createtable(L, (int)r->forward_sets, 0);
  for (int64_t s = 0; s < r->forward_sets; s++) {
    int64_t n, d;
    const real *p = rl_rotp_plan(r, s, &n, &d);
    rlb_tensor *t = rlb_newmatrix(L, d, n);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++) t->t.data[j * n + i] = p[i * d + j];
    lua_rawseti(L, -2, (lua_Integer)s + 1);
  }
  return 1;
}

static int hrotp_top_input(lua_State *L) {
  rl_module *m = check_hrotp(L);
  rl_batch b;
  if (rl_hrotp_top_input(m, &b)) return rlb_error(L);
  rlb_tensor *v = rlb_newtensor(L, 2, b.values.shape);
  memcpy(v->t.data, b.values.data, (size_t)b.values.numel * sizeof(real));
  rlb_pushsets(L, -1, 1, b.offsets, b.count);
  return 1;
}

int rlb_open_hrotp(lua_State *L) {
  static const luaL_Reg methods[] = {{"mode", hrotp_mode},   {"heads", hrotp_heads},         {"values", hrotp_values},
                                     {"plan", hrotp_plan},   {"top_input", hrotp_top_input}, {NULL, NULL}};
  rlb_register_methods(L, "hrotp", methods);
  if (lua_getfield(L, -1, "pool_rotp") != LUA_TFUNCTION)
    return luaL_error(L, "rlb_open_hrotp: core.pool_rotp must be registered first (rlb_open_rotp)");
  lua_pushcclosure(L, l_pool_hrotp, 1);
  lua_setfield(L, -2, "pool_hrotp");
  return 0;
}
