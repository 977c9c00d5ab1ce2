/*
** bind_mil.c -- Lua binding of the MIL converter (core/data/mil), of per-feature standardisation
** (core/nn/standardize, core/data/stats):
**
**   core.mil_read(dir) -> {X = n x d tensor, offsets = {0, ..., n} (B+1), y = {...} (B), bags =, instances =,
**                          dim =, positives =}
**   core.mil_convert(dir, out [, {name =, source =, licence =, dtype = "float32" | "float64"}])
**        -> {file =, bags =, instances =, dim =, positives =}: writes the dataset file (DESIGN section 5) with
**           root attributes num_classes = 2, kind = "mil", converted_from = dir and the given name/source/licence
**   core.nn_Standardize(mean, std) (rl.nn.Standardize): the row-wise module (x - mean) / std
**   ds:feature_stats(indices) -> mean, std (tensors of D values) over the rows of those sets (1-based indices)
**
** Core results are held in a box userdata whose __gc frees them, created before anything is acquired.
*/
#include <string.h>

#include "../core/data/dataset.h"
#include "../core/data/mil.h"
#include "../core/data/stats.h"
#include "../core/nn/standardize.h"
#include "bind.h"

#define RLB_MILBOX "rotlab.milbox"

static int milbox_gc(lua_State *L) {
  rl_mil_free(luaL_checkudata(L, 1, RLB_MILBOX));
  return 0;
}

/* Pushes a new empty box. */
static rl_mil *new_milbox(lua_State *L) {
  rl_mil *m = lua_newuserdatauv(L, sizeof(rl_mil), 0);
  rl_mil_init(m);
  luaL_setmetatable(L, RLB_MILBOX);
  return m;
}

static void set_int(lua_State *L, const char *key, int64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, key);
}

static void push_counts(lua_State *L, const rl_mil *m) {
  set_int(L, "bags", m->bags);
  set_int(L, "instances", m->instances);
  set_int(L, "dim", m->dim);
  set_int(L, "positives", m->positives);
}

static void push_int_list(lua_State *L, const int64_t *v, int64_t n) {
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* core.mil_read(dir) */
static int l_mil_read(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  rl_mil *m = new_milbox(L);
  if (rl_mil_read_dir(m, dir)) return rlb_error(L);
  lua_createtable(L, 0, 7);
  rlb_tensor *x = rlb_newmatrix(L, m->instances, m->dim);
  memcpy(x->t.data, m->X, (size_t)(m->instances * m->dim) * sizeof(real));
  lua_setfield(L, -2, "X");
  push_int_list(L, m->offsets, m->bags + 1);
  lua_setfield(L, -2, "offsets");
  push_int_list(L, m->y, m->bags);
  lua_setfield(L, -2, "y");
  push_counts(L, m);
  rl_mil_free(m);
  return 1;
}

static const char *const x_types[] = {"float32", "float64", NULL};

/* Adds a string attribute when value is not NULL. */
static void add_string_attr(rl_h5_attr *a, int *n, const char *name, const char **value) {
  if (!*value) return;
  memset(&a[*n], 0, sizeof a[*n]);
  a[*n].name = name;
  a[*n].kind = RL_H5_ATTR_STRING;
  a[*n].count = 1;
  a[*n].strings = value;
  (*n)++;
}

/* core.mil_convert(dir, out [, opts]) */
static int l_mil_convert(lua_State *L) {
  static const char *const known[] = {"name", "source", "licence", "dtype", NULL};
  const char *dir = luaL_checkstring(L, 1), *out = luaL_checkstring(L, 2);
  rlb_check_options(L, 3, "mil_convert", known);
  const char *name = rlb_opt_string(L, 3, "name", NULL), *source = rlb_opt_string(L, 3, "source", NULL);
  const char *licence = rlb_opt_string(L, 3, "licence", NULL), *kind = "mil";
  int as_double = rlb_opt_choice(L, 3, "dtype", "float32", x_types);
  rl_mil *m = new_milbox(L);
  if (rl_mil_read_dir(m, dir)) return rlb_error(L);
  static const int64_t two = 2;
  rl_h5_attr attrs[6];
  int nattrs = 0;
  memset(&attrs[nattrs], 0, sizeof attrs[0]);
  attrs[nattrs].name = "num_classes";
  attrs[nattrs].kind = RL_H5_ATTR_INT;
  attrs[nattrs].count = 1;
  attrs[nattrs++].ints = &two;
  add_string_attr(attrs, &nattrs, "kind", &kind);
  add_string_attr(attrs, &nattrs, "converted_from", &dir);
  add_string_attr(attrs, &nattrs, "name", &name);
  add_string_attr(attrs, &nattrs, "source", &source);
  add_string_attr(attrs, &nattrs, "licence", &licence);
  rl_dataset_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.X = m->X;
  spec.rows = m->instances;
  spec.dim = m->dim;
  spec.x_as_double = as_double;
  spec.offsets = m->offsets;
  spec.count = m->bags;
  spec.y = m->y;
  spec.attrs = attrs;
  spec.nattrs = nattrs;
  if (rl_dataset_write(out, &spec)) return rlb_error(L);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, out);
  lua_setfield(L, -2, "file");
  push_counts(L, m);
  rl_mil_free(m);
  return 1;
}

/* ---------------------------------------------------------------- standardisation */

/* core.nn_Standardize(mean, std): tensors or lists of D numbers */
static int l_standardize(lua_State *L) {
  rlb_tensor *mean = rlb_checktensorlike(L, 1);
  rlb_tensor *std = rlb_checktensorlike(L, 2);
  if (mean->t.numel < 1)
    return luaL_argerror(L, 1, "Standardize: expected D >= 1 means");
  if (std->t.numel != mean->t.numel)
    return luaL_argerror(L, 2, lua_pushfstring(L, "Standardize: expected %d standard deviations (one per mean), got %d",
                                               (int)mean->t.numel, (int)std->t.numel));
  rlb_module *u = rlb_newmodule(L);
  u->m = rl_standardize_new(mean->t.numel, mean->t.data, std->t.data);
  if (!u->m) return rlb_error(L);
  return 1;
}

/* ds:feature_stats(indices) -> mean, std */
static int d_feature_stats(lua_State *L) {
  rl_dataset *ds = rlb_checkdataset(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t n = (int64_t)lua_rawlen(L, 2);
  if (n < 1) return luaL_argerror(L, 2, "feature_stats: expected a non-empty list of set indices");
  int64_t *sets = lua_newuserdatauv(L, (size_t)n * sizeof(int64_t), 0);
  for (int64_t i = 0; i < n; i++) {
    int ok;
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || v < 1 || v > ds->count)
      return luaL_argerror(L, 2, lua_pushfstring(L, "feature_stats: entry %d is not a set index in 1..%d",
                                                 (int)i + 1, (int)ds->count));
    sets[i] = (int64_t)v - 1;
  }
  int64_t shape[1] = {ds->dim};
  rlb_tensor *mean = rlb_newtensor(L, 1, shape);
  rlb_tensor *std = rlb_newtensor(L, 1, shape);
  if (rl_dataset_feature_stats(ds, sets, n, mean->t.data, std->t.data)) return rlb_error(L);
  return 2;
}

int rlb_open_mil(lua_State *L) {
  luaL_newmetatable(L, RLB_MILBOX);
  lua_pushcfunction(L, milbox_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  /* the dataset methods live in bind_data.c; feature_stats joins them */
  if (luaL_getmetatable(L, RLB_DATASET) == LUA_TTABLE) {
    if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
      lua_pushcfunction(L, d_feature_stats);
      lua_setfield(L, -2, "feature_stats");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"mil_read", l_mil_read},
                                 {"mil_convert", l_mil_convert},
                                 {"nn_Standardize", l_standardize},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
