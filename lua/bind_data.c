/*
** bind_data.c -- Lua binding of core/data: generic HDF5 access (h5_*), datasets (data_load, data_write and the
** dataset methods), splits, k-fold and mini-batches (data_split, data_kfold, data_batches). rotlab.data wraps these
** as rl.data and rl.h5. Indices are 1-based in Lua and 0-based in core.
**
** HDF5 handles and core-allocated results are held in a "box" userdata whose __gc releases them, created before any
** resource is acquired: a Lua error (even out of memory) never leaks a handle. Every call closes its file before
** returning or raising, so a later call may reopen it for writing.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/data/h5io.h"
#include "bind.h"

#define RLB_H5BOX "rotlab.h5box"

/* ---------------------------------------------------------------- the box */

typedef struct h5box {
  rl_h5 f;
  rl_h5_list list;
  rl_h5_attrs attrs;
} h5box;

static void box_release(h5box *b) {
  rl_h5_close(&b->f);
  rl_h5_list_free(&b->list);
  rl_h5_attrs_free(&b->attrs);
}

static int box_gc(lua_State *L) {
  box_release(luaL_checkudata(L, 1, RLB_H5BOX));
  return 0;
}

static h5box *new_box(lua_State *L) {
  h5box *b = lua_newuserdatauv(L, sizeof(h5box), 0);
  rl_h5_init(&b->f);
  memset(&b->list, 0, sizeof b->list);
  memset(&b->attrs, 0, sizeof b->attrs);
  luaL_setmetatable(L, RLB_H5BOX);
  return b;
}

/* Releases the box, then raises the core error. */
static int box_fail(lua_State *L, h5box *b) {
  box_release(b);
  return rlb_error(L);
}

/* ---------------------------------------------------------------- pushing attributes */

static void push_attr_value(lua_State *L, const rl_h5_attr *a, int64_t i) {
  switch (a->kind) {
  case RL_H5_ATTR_INT: lua_pushinteger(L, (lua_Integer)a->ints[i]); break;
  case RL_H5_ATTR_BOOL: lua_pushboolean(L, a->ints[i] != 0); break;
  case RL_H5_ATTR_FLOAT: lua_pushnumber(L, (lua_Number)a->floats[i]); break;
  default: lua_pushstring(L, a->strings[i]); break;
  }
}

/* Pushes a table name -> value (scalars) or list (arrays). */
static void push_attrs(lua_State *L, const rl_h5_attrs *attrs) {
  lua_createtable(L, 0, attrs->count);
  for (int i = 0; i < attrs->count; i++) {
    const rl_h5_attr *a = &attrs->items[i];
    if (a->is_array) {
      lua_createtable(L, (int)a->count, 0);
      for (int64_t k = 0; k < a->count; k++) {
        push_attr_value(L, a, k);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
      }
    } else {
      push_attr_value(L, a, 0);
    }
    lua_setfield(L, -2, a->name);
  }
}

/* ---------------------------------------------------------------- reading */

/* Opens file (argument 1) for reading into a new box pushed on the stack. */
static h5box *open_for_reading(lua_State *L, const char *file) {
  h5box *b = new_box(L);
  if (rl_h5_open(&b->f, file, RL_H5_READ)) box_fail(L, b);
  return b;
}

/* rl.h5.read(file, path) -> tensor with the stored shape (a scalar dataset gives a 1-element 1-D tensor) */
static int l_h5_read(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  h5box *b = open_for_reading(L, file);
  rl_h5_info info;
  if (rl_h5_dataset_info(&b->f, path, &info)) return box_fail(L, b);
  if (info.type_class == RL_H5_NONNUMERIC) {
    rl_fail(RL_EINVAL, "%s: %s: has type %s, expected a numeric dataset", file, path, info.type_name);
    return box_fail(L, b);
  }
  if (info.ndim > RL_MAX_DIMS) {
    rl_fail(RL_EINVAL, "%s: %s: has rank %d, at most %d is supported", file, path, info.ndim, RL_MAX_DIMS);
    return box_fail(L, b);
  }
  int ndim = info.ndim ? info.ndim : 1;
  int64_t one = 1, numel;
  const int64_t *shape = info.ndim ? info.shape : &one;
  if (rl_shape_check(ndim, shape, &numel)) return box_fail(L, b);
  rlb_tensor *u = rlb_newtensor(L, ndim, shape);
  if (rl_h5_read_real(&b->f, path, u->t.data, u->t.numel)) return box_fail(L, b);
  box_release(b);
  return 1;
}

static void push_shape(lua_State *L, const rl_h5_info *info) {
  lua_createtable(L, info->ndim, 0);
  for (int i = 0; i < info->ndim; i++) {
    lua_pushinteger(L, (lua_Integer)info->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* rl.h5.read_int(file, path) -> flat Lua list of integers (row-major), shape (list; {} for a scalar) */
static int l_h5_read_int(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  h5box *b = open_for_reading(L, file);
  rl_h5_info info;
  if (rl_h5_dataset_info(&b->f, path, &info)) return box_fail(L, b);
  if (info.type_class != RL_H5_INT && info.type_class != RL_H5_UINT) {
    rl_fail(RL_EINVAL, "%s: %s: has type %s, expected an integer dataset", file, path, info.type_name);
    return box_fail(L, b);
  }
  if ((size_t)info.numel > RL_MAX_ALLOC / sizeof(int64_t)) {
    rl_fail(RL_ENOMEM, "%s: %s: too many elements (%lld)", file, path, (long long)info.numel);
    return box_fail(L, b);
  }
  int64_t *buf = lua_newuserdatauv(L, (size_t)info.numel * sizeof(int64_t), 0);
  if (rl_h5_read_int64(&b->f, path, buf, info.numel)) return box_fail(L, b);
  box_release(b);
  lua_createtable(L, (int)info.numel, 0);
  for (int64_t i = 0; i < info.numel; i++) {
    lua_pushinteger(L, (lua_Integer)buf[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  push_shape(L, &info);
  return 2;
}

static const char *kind_string(int kind) {
  return kind == RL_H5_GROUP ? "group" : kind == RL_H5_DATASET ? "dataset" : "other";
}

/* rl.h5.list(file [, group = "/"]) -> list of {name =, kind = "group" | "dataset" | "other"}, sorted by name */
static int l_h5_list(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_optstring(L, 2, "/");
  h5box *b = open_for_reading(L, file);
  if (rl_h5_list_group(&b->f, path, &b->list)) return box_fail(L, b);
  rl_h5_close(&b->f);
  lua_createtable(L, (int)b->list.count, 0);
  for (int64_t i = 0; i < b->list.count; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, b->list.items[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, kind_string(b->list.items[i].kind));
    lua_setfield(L, -2, "kind");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  box_release(b);
  return 1;
}

/* rl.h5.attrs(file [, path = "/"]) -> table name -> number | string | boolean | list */
static int l_h5_attrs(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_optstring(L, 2, "/");
  h5box *b = open_for_reading(L, file);
  if (rl_h5_read_attrs(&b->f, path, &b->attrs)) return box_fail(L, b);
  rl_h5_close(&b->f);
  push_attrs(L, &b->attrs);
  box_release(b);
  return 1;
}

/* rl.h5.exists(file, path) -> boolean (a missing file is an error) */
static int l_h5_exists(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  h5box *b = open_for_reading(L, file);
  int kind;
  if (rl_h5_kind(&b->f, path, &kind)) return box_fail(L, b);
  box_release(b);
  lua_pushboolean(L, kind != RL_H5_MISSING);
  return 1;
}

/* ---------------------------------------------------------------- writing */

/* Reads a Lua list of attribute values at idx (all the same Lua type) into a[0..]. Buffers are userdata anchored in
** the table at anchor. */
static void check_attr_list(lua_State *L, int idx, int anchor, const char *fname, rl_h5_attr *a) {
  int64_t n = (int64_t)lua_rawlen(L, idx);
  int kind = RL_H5_ATTR_INT;
  for (int64_t i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, (lua_Integer)i);
    int k = t == LUA_TSTRING ? RL_H5_ATTR_STRING
            : t == LUA_TBOOLEAN ? RL_H5_ATTR_BOOL
            : t == LUA_TNUMBER ? (lua_isinteger(L, -1) ? RL_H5_ATTR_INT : RL_H5_ATTR_FLOAT)
                                : -1;
    lua_pop(L, 1);
    if (k < 0)
      luaL_error(L, "%s: attribute '%s': entry %d is a %s (expected numbers, strings or booleans)", fname, a->name,
                 (int)i, lua_typename(L, t));
    if (i == 1) kind = k;
    else if ((kind == RL_H5_ATTR_INT || kind == RL_H5_ATTR_FLOAT) && (k == RL_H5_ATTR_INT || k == RL_H5_ATTR_FLOAT))
      kind = (kind == RL_H5_ATTR_FLOAT || k == RL_H5_ATTR_FLOAT) ? RL_H5_ATTR_FLOAT : RL_H5_ATTR_INT;
    else if (k != kind)
      luaL_error(L, "%s: attribute '%s': list entries must all be numbers, all strings or all booleans", fname, a->name);
  }
  size_t elem = kind == RL_H5_ATTR_STRING ? sizeof(char *) : kind == RL_H5_ATTR_FLOAT ? sizeof(double) : sizeof(int64_t);
  void *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * elem, 0);
  lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
  for (int64_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    if (kind == RL_H5_ATTR_STRING) ((const char **)buf)[i] = lua_tostring(L, -1); /* the list keeps it alive */
    else if (kind == RL_H5_ATTR_FLOAT) ((double *)buf)[i] = (double)lua_tonumber(L, -1);
    else if (kind == RL_H5_ATTR_BOOL) ((int64_t *)buf)[i] = lua_toboolean(L, -1);
    else ((int64_t *)buf)[i] = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  a->kind = kind;
  a->is_array = 1;
  a->count = n;
  if (kind == RL_H5_ATTR_STRING) a->strings = buf;
  else if (kind == RL_H5_ATTR_FLOAT) a->floats = buf;
  else a->ints = buf;
}

/* Converts the table of attributes at idx (name -> number | string | boolean | list) into an array of rl_h5_attr
** held in userdata; pushes one anchor table keeping every buffer alive. Returns the array, *count its length. The
** strings belong to the caller's table, which must stay unmodified while the array is used. */
static rl_h5_attr *check_attrs(lua_State *L, int idx, const char *fname, int *count) {
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: attribute names must be strings, got %s", fname, luaL_typename(L, -1));
    n++;
  }
  lua_newtable(L);
  int anchor = lua_gettop(L);
  rl_h5_attr *attrs = lua_newuserdatauv(L, sizeof(rl_h5_attr) * (size_t)(n ? n : 1), 0);
  lua_rawseti(L, anchor, 1);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    rl_h5_attr *a = &attrs[i++];
    memset(a, 0, sizeof *a);
    a->name = lua_tostring(L, -2);
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) {
      check_attr_list(L, lua_gettop(L), anchor, fname, a);
    } else if (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
      size_t elem = t == LUA_TSTRING ? sizeof(char *) : sizeof(double) > sizeof(int64_t) ? sizeof(double) : sizeof(int64_t);
      void *buf = lua_newuserdatauv(L, elem, 0);
      lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
      a->count = 1;
      if (t == LUA_TSTRING) {
        *(const char **)buf = lua_tostring(L, -1);
        a->kind = RL_H5_ATTR_STRING;
        a->strings = buf;
      } else if (t == LUA_TBOOLEAN) {
        *(int64_t *)buf = lua_toboolean(L, -1);
        a->kind = RL_H5_ATTR_BOOL;
        a->ints = buf;
      } else if (lua_isinteger(L, -1)) {
        *(int64_t *)buf = (int64_t)lua_tointeger(L, -1);
        a->kind = RL_H5_ATTR_INT;
        a->ints = buf;
      } else {
        *(double *)buf = (double)lua_tonumber(L, -1);
        a->kind = RL_H5_ATTR_FLOAT;
        a->floats = buf;
      }
    } else {
      luaL_error(L, "%s: attribute '%s' is a %s (expected a number, string, boolean or list of them)", fname, a->name,
                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  *count = n;
  return attrs;
}

static const char *const write_types[] = {"float32", "float64", "int64", NULL};

/* Reads the data argument of h5_write as int64 values into a userdata buffer (pushed); sets ndim/shape. */
static int64_t *check_int_data(lua_State *L, int idx, int *ndim, int64_t *shape) {
  rlb_tensor *t = rlb_totensor(L, idx);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (!lua_isinteger(L, idx)) luaL_argerror(L, idx, "expected an integer for an int64 dataset");
    int64_t *buf = lua_newuserdatauv(L, sizeof(int64_t), 0);
    *buf = (int64_t)lua_tointeger(L, idx);
    *ndim = 0;
    return buf;
  }
  if (t) {
    int64_t *buf = lua_newuserdatauv(L, (size_t)(t->t.numel ? t->t.numel : 1) * sizeof(int64_t), 0);
    for (int64_t i = 0; i < t->t.numel; i++) {
      real v = t->t.data[i];
      if (v != floor(v) || !isfinite(v))
        luaL_argerror(L, idx, lua_pushfstring(L, "element %d of the tensor is not an integer", (int)i + 1));
      buf[i] = (int64_t)v;
    }
    *ndim = t->t.ndim;
    memcpy(shape, t->t.shape, sizeof(int64_t) * RL_MAX_DIMS);
    return buf;
  }
  if (lua_type(L, idx) != LUA_TTABLE) luaL_typeerror(L, idx, "list of integers, tensor or integer");
  int64_t n = (int64_t)lua_rawlen(L, idx);
  int64_t *buf = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(int64_t), 0);
  for (int64_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_argerror(L, idx, lua_pushfstring(L, "entry %d is not an integer", (int)i + 1));
    buf[i] = (int64_t)v;
    lua_pop(L, 1);
  }
  *ndim = 1;
  shape[0] = n;
  return buf;
}

/* rl.h5.write(file, path, data [, {type = "float64" | "float32" | "int64", truncate = false}])
** data: tensor or nested table of numbers (float types), list of integers or integral tensor (int64), or a number
** (a scalar dataset). The file is created when missing (or emptied first with truncate = true); parents of path
** are created; an existing dataset at path is an error. */
static int l_h5_write(lua_State *L) {
  static const char *const known[] = {"type", "truncate", NULL};
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
  rlb_check_options(L, 4, "h5.write", known);
  int type = rlb_opt_choice(L, 4, "type", "float64", write_types);
  int mode = rlb_opt_boolean(L, 4, "truncate", 0) ? RL_H5_TRUNCATE : RL_H5_APPEND;
  int ndim = 0;
  int64_t shape[RL_MAX_DIMS] = {0};
  const real *rdata = NULL;
  const int64_t *idata = NULL;
  real scalar = 0;
  if (type == 2) {
    idata = check_int_data(L, 3, &ndim, shape);
  } else if (lua_type(L, 3) == LUA_TNUMBER) {
    scalar = (real)lua_tonumber(L, 3);
    rdata = &scalar;
  } else {
    rlb_tensor *t = rlb_checktensorlike(L, 3);
    rdata = t->t.data;
    ndim = t->t.ndim;
    memcpy(shape, t->t.shape, sizeof shape);
  }
  h5box *b = new_box(L);
  int rc = rl_h5_open(&b->f, file, mode);
  if (!rc)
    rc = type == 2 ? rl_h5_write_int64(&b->f, path, idata, ndim, shape)
                   : rl_h5_write_real(&b->f, path, rdata, ndim, shape, type == 1);
  if (rc) return box_fail(L, b);
  box_release(b);
  return 0;
}

/* rl.h5.write_attrs(file, path, {name = value, ...}): writes or replaces attributes of an existing group or
** dataset (path "/" is the root). Integers are stored as int64, other numbers as float64, strings as UTF-8,
** booleans as h5py booleans; a list gives an array attribute. */
static int l_h5_write_attrs(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  int n;
  rl_h5_attr *attrs = check_attrs(L, 3, "h5.write_attrs", &n);
  h5box *b = new_box(L);
  if (rl_h5_open(&b->f, file, RL_H5_APPEND)) return box_fail(L, b);
  for (int i = 0; i < n; i++)
    if (rl_h5_write_attr(&b->f, path, &attrs[i])) return box_fail(L, b);
  box_release(b);
  return 0;
}

/* rl.h5.create_group(file, path): creates the group and its parents (the file too when missing) */
static int l_h5_create_group(lua_State *L) {
  const char *file = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  h5box *b = new_box(L);
  if (rl_h5_open(&b->f, file, RL_H5_APPEND) || rl_h5_create_group(&b->f, path)) return box_fail(L, b);
  box_release(b);
  return 0;
}

/* ---------------------------------------------------------------- registration */

int rlb_open_data(lua_State *L) {
  luaL_newmetatable(L, RLB_H5BOX);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"h5_read", l_h5_read},
                                 {"h5_read_int", l_h5_read_int},
                                 {"h5_list", l_h5_list},
                                 {"h5_attrs", l_h5_attrs},
                                 {"h5_exists", l_h5_exists},
                                 {"h5_write", l_h5_write},
                                 {"h5_write_attrs", l_h5_write_attrs},
                                 {"h5_create_group", l_h5_create_group},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
