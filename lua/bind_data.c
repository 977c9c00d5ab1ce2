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
#include <stdlib.h>
#include <string.h>

#include "../core/data/dataset.h"
#include "../core/data/h5io.h"
#include "../core/data/split.h"
#include "bind.h"

#define RLB_H5BOX "rotlab.h5box"
#define RLB_DATASET "rotlab.dataset"

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

static int cmp_attr_name(const void *a, const void *b) {
  return strcmp(((const rl_h5_attr *)a)->name, ((const rl_h5_attr *)b)->name);
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
  qsort(attrs, (size_t)n, sizeof *attrs, cmp_attr_name); /* a fixed order: the same attributes give the same file */
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
      if (v != floor(v) || !(fabs((double)v) < 9.2e18)) /* (beyond int64 the cast would be undefined) */
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

/* ---------------------------------------------------------------- integer lists */

/* Reads a Lua list of integers (or a tensor of integral values) at idx into a new userdata buffer (pushed);
** *n gets its length. one_based: entries must be >= 1 and are returned minus one. Errors are argument errors
** for arg > 0, else plain errors prefixed with what. */
static int64_t *check_int_list(lua_State *L, int idx, int arg, const char *what, int one_based, int64_t *n) {
  idx = lua_absindex(L, idx);
  rlb_tensor *t = rlb_totensor(L, idx);
  const char *msg = NULL;
  if (!t && lua_type(L, idx) != LUA_TTABLE) {
    msg = lua_pushfstring(L, "%s: expected a list of integers, got %s", what, luaL_typename(L, idx));
    return arg > 0 ? (luaL_argerror(L, arg, msg), NULL) : (luaL_error(L, "%s", msg), NULL);
  }
  int64_t len = t ? t->t.numel : (int64_t)lua_rawlen(L, idx);
  int64_t *buf = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof(int64_t), 0);
  for (int64_t i = 0; i < len && !msg; i++) {
    int64_t v = 0;
    int ok;
    if (t) {
      real r = t->t.data[i];
      ok = isfinite(r) && r == floor(r);
      v = ok ? (int64_t)r : 0;
    } else {
      lua_rawgeti(L, idx, (lua_Integer)i + 1);
      v = (int64_t)lua_tointegerx(L, -1, &ok);
      lua_pop(L, 1);
    }
    if (!ok) msg = lua_pushfstring(L, "%s: entry %d is not an integer", what, (int)i + 1);
    else if (one_based && v < 1) msg = lua_pushfstring(L, "%s: entry %d is %d; indices are 1-based", what, (int)i + 1, (int)v);
    buf[i] = one_based ? v - 1 : v;
  }
  if (msg) return arg > 0 ? (luaL_argerror(L, arg, msg), NULL) : (luaL_error(L, "%s", msg), NULL);
  *n = len;
  return buf;
}

static void push_int_list(lua_State *L, const int64_t *v, int64_t n, int64_t add) {
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)(v[i] + add));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* ---------------------------------------------------------------- datasets */

/* Dataset userdata: the core dataset; uservalue 1 is the X tensor (memory the Lua GC accounts for). */
typedef struct rlb_dataset {
  rl_dataset ds;
  int open;
} rlb_dataset;

static rlb_dataset *check_dataset(lua_State *L, int idx) {
  rlb_dataset *u = luaL_checkudata(L, idx, RLB_DATASET);
  if (!u->open) luaL_argerror(L, idx, lua_pushfstring(L, "dataset %s has been closed", u->ds.file));
  return u;
}

rl_dataset *rlb_checkdataset(lua_State *L, int idx) { return &check_dataset(L, idx)->ds; }

/* rl.data.load(path) -> dataset (validated; errors name the file and the field) */
static int l_data_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  rlb_dataset *u = lua_newuserdatauv(L, sizeof(rlb_dataset), 1);
  rl_dataset_init(&u->ds);
  u->open = 0;
  luaL_setmetatable(L, RLB_DATASET);
  if (rl_dataset_open(&u->ds, path)) return rlb_error(L);
  u->open = 1; /* from here on __gc frees the arrays if anything below raises */
  rlb_tensor *x = rlb_newmatrix(L, u->ds.rows, u->ds.dim);
  if (rl_dataset_read_values(&u->ds, x->t.data)) {
    rl_dataset_free(&u->ds);
    u->open = 0;
    return rlb_error(L);
  }
  u->ds.X = x->t.data;
  u->ds.owns_X = 0;
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int d_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_dataset(L, 1)->ds.count);
  return 1;
}
static int d_dim(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_dataset(L, 1)->ds.dim);
  return 1;
}
static int d_rows(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_dataset(L, 1)->ds.rows);
  return 1;
}
static int d_num_classes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_dataset(L, 1)->ds.num_classes);
  return 1;
}
static int d_file(lua_State *L) {
  lua_pushstring(L, check_dataset(L, 1)->ds.file);
  return 1;
}
/* ds:labels() -> list of the B labels (0-based class ids, as stored) */
static int d_labels(lua_State *L) {
  rl_dataset *ds = &check_dataset(L, 1)->ds;
  push_int_list(L, ds->y, ds->count, 0);
  return 1;
}
/* ds:set_sizes() -> list of the B set sizes */
static int d_set_sizes(lua_State *L) {
  rl_dataset *ds = &check_dataset(L, 1)->ds;
  lua_createtable(L, (int)ds->count, 0);
  for (int64_t b = 0; b < ds->count; b++) {
    lua_pushinteger(L, (lua_Integer)(ds->offsets[b + 1] - ds->offsets[b]));
    lua_rawseti(L, -2, (lua_Integer)b + 1);
  }
  return 1;
}
/* ds:offsets() -> list of the B+1 row offsets (0-based, as stored) */
static int d_offsets(lua_State *L) {
  rl_dataset *ds = &check_dataset(L, 1)->ds;
  push_int_list(L, ds->offsets, ds->count + 1, 0);
  return 1;
}
/* ds:folds() -> list of the B stored folds (as stored, usually 0-based), or nil without /fold */
static int d_folds(lua_State *L) {
  rl_dataset *ds = &check_dataset(L, 1)->ds;
  if (!ds->fold) lua_pushnil(L);
  else push_int_list(L, ds->fold, ds->count, 0);
  return 1;
}
/* ds:group_offsets() -> list of the G+1 group offsets (0-based, as stored), or nil without /group_offsets */
static int d_group_offsets(lua_State *L) {
  rl_dataset *ds = &check_dataset(L, 1)->ds;
  if (!ds->group_offsets) lua_pushnil(L);
  else push_int_list(L, ds->group_offsets, ds->ngroups + 1, 0);
  return 1;
}
/* ds:attrs() -> table of the root attributes */
static int d_attrs(lua_State *L) {
  push_attrs(L, &check_dataset(L, 1)->ds.attrs);
  return 1;
}
/* ds:values() -> the rows x D tensor of all instances (shared with the dataset, not a copy) */
static int d_values(lua_State *L) {
  check_dataset(L, 1);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* ds:batch(indices) -> rl.sets(values, offsets) of those sets (1-based indices, in the given order), labels
** (tensor of B values) */
static int d_batch(lua_State *L) {
  rlb_dataset *u = check_dataset(L, 1);
  int64_t n, rows;
  int64_t *sets = check_int_list(L, 2, 2, "indices", 1, &n);
  if (n < 1) return luaL_argerror(L, 2, "indices: a batch needs at least one set");
  for (int64_t i = 0; i < n; i++)
    if (sets[i] >= u->ds.count)
      return luaL_argerror(L, 2, lua_pushfstring(L, "indices: entry %d is %d, out of range 1..%d", (int)i + 1,
                                                 (int)sets[i] + 1, (int)u->ds.count));
  if (rl_dataset_batch_rows(&u->ds, sets, n, &rows)) return rlb_argerror(L, 2);
  rlb_tensor *values = rlb_newmatrix(L, rows, u->ds.dim);
  int values_idx = lua_gettop(L);
  int64_t *offsets = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof(int64_t), 0);
  int64_t *labels = lua_newuserdatauv(L, (size_t)n * sizeof(int64_t), 0);
  if (rl_dataset_gather(&u->ds, sets, n, values->t.data, rows, offsets, labels)) return rlb_error(L);
  const int64_t *levels[1] = {offsets};
  rlb_pushsets(L, values_idx, 1, levels, &n);
  int64_t shape[1] = {n};
  rlb_tensor *y = rlb_newtensor(L, 1, shape);
  for (int64_t i = 0; i < n; i++) y->t.data[i] = (real)labels[i];
  return 2;
}

/* ds:close(): frees the arrays now (also __close / __gc); later calls raise. */
static int d_close(lua_State *L) {
  rlb_dataset *u = luaL_checkudata(L, 1, RLB_DATASET);
  rl_dataset_free(&u->ds);
  u->open = 0;
  return 0;
}

static int d_len(lua_State *L) { return d_size(L); }

static int d_tostring(lua_State *L) {
  rlb_dataset *u = luaL_checkudata(L, 1, RLB_DATASET);
  if (!u->open) {
    lua_pushfstring(L, "rotlab.dataset(%s, closed)", u->ds.file);
    return 1;
  }
  lua_pushfstring(L, "rotlab.dataset(%s: %d sets, %d rows x %d, %d classes)", u->ds.file, (int)u->ds.count,
                  (int)u->ds.rows, (int)u->ds.dim, (int)u->ds.num_classes);
  return 1;
}

static const luaL_Reg dataset_methods[] = {
    {"size", d_size},       {"dim", d_dim},           {"rows", d_rows},
    {"num_classes", d_num_classes}, {"file", d_file}, {"labels", d_labels},
    {"set_sizes", d_set_sizes}, {"offsets", d_offsets}, {"folds", d_folds},
    {"group_offsets", d_group_offsets}, {"attrs", d_attrs}, {"values", d_values},
    {"batch", d_batch},     {"close", d_close},       {NULL, NULL}};

/* Gets field key of the table at idx, raising when a required one is absent; returns its stack index (0 if
** absent and optional). */
static int get_field(lua_State *L, int idx, const char *key, int required) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    if (required) luaL_error(L, "data.write: field '%s' is required", key);
    return 0;
  }
  return lua_gettop(L);
}

static const char *const x_types[] = {"float32", "float64", NULL};

/* rl.data.write(path, {X = tensor, offsets = list, y = list [, group_offsets = list, fold = list,
**                        attrs = {name = value}, dtype = "float32" | "float64"]})
** Validates like rl.data.load, then writes a new file. dtype defaults to the build's scalar type (exact round
** trips); DESIGN's float32 is dtype = "float32". */
static int l_data_write(lua_State *L) {
  static const char *const known[] = {"X", "offsets", "y", "group_offsets", "fold", "attrs", "dtype", NULL};
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  rlb_check_options(L, 2, "data.write", known);
  rl_dataset_spec spec;
  memset(&spec, 0, sizeof spec);
  spec.x_as_double = rlb_opt_choice(L, 2, "dtype", sizeof(real) == sizeof(double) ? "float64" : "float32", x_types);
  int xi = get_field(L, 2, "X", 1);
  if (!rlb_totensor(L, xi) && lua_type(L, xi) != LUA_TTABLE)
    return luaL_error(L, "data.write: X must be a 2-D tensor (rows x D), got %s", luaL_typename(L, xi));
  rlb_tensor *x = rlb_checktensorlike(L, xi);
  if (x->t.ndim != 2) return luaL_error(L, "data.write: X must be a 2-D tensor (rows x D), got %d-D", x->t.ndim);
  spec.X = x->t.data;
  spec.rows = x->t.shape[0];
  spec.dim = x->t.shape[1];
  int64_t n;
  spec.offsets = check_int_list(L, get_field(L, 2, "offsets", 1), 0, "data.write: offsets", 0, &n);
  if (n < 2) return luaL_error(L, "data.write: offsets needs at least 2 entries (B+1 for B sets), got %d", (int)n);
  spec.count = n - 1;
  spec.y = check_int_list(L, get_field(L, 2, "y", 1), 0, "data.write: y", 0, &n);
  if (n != spec.count)
    return luaL_error(L, "data.write: y has %d entries, expected one label per set (%d)", (int)n, (int)spec.count);
  int gi = get_field(L, 2, "group_offsets", 0);
  if (gi) {
    spec.group_offsets = check_int_list(L, gi, 0, "data.write: group_offsets", 0, &n);
    if (n < 2) return luaL_error(L, "data.write: group_offsets needs at least 2 entries (G+1 for G groups), got %d", (int)n);
    spec.ngroups = n - 1;
  }
  int fi = get_field(L, 2, "fold", 0);
  if (fi) {
    spec.fold = check_int_list(L, fi, 0, "data.write: fold", 0, &n);
    if (n != spec.count)
      return luaL_error(L, "data.write: fold has %d entries, expected one per set (%d)", (int)n, (int)spec.count);
  }
  int ai = get_field(L, 2, "attrs", 0);
  if (ai) {
    if (lua_type(L, ai) != LUA_TTABLE) return luaL_error(L, "data.write: attrs must be a table, got %s", luaL_typename(L, ai));
    spec.attrs = check_attrs(L, ai, "data.write", &spec.nattrs);
  }
  if (rl_dataset_write(path, &spec)) return rlb_error(L);
  return 0;
}

/* ---------------------------------------------------------------- splits, k-fold, batches */

/* The generator of a split call: option rng (advanced in place), else a fresh one seeded with option seed (0). */
static rl_rng *split_rng(lua_State *L, int opts, const char *fname) {
  if (rlb_opt_present(L, opts, "rng")) {
    if (rlb_opt_present(L, opts, "seed")) luaL_error(L, "%s: give either seed or rng, not both", fname);
    return rlb_opt_rng(L, opts);
  }
  rl_rng *g = lua_newuserdatauv(L, sizeof(rl_rng), 0);
  rl_rng_seed(g, (uint64_t)rlb_opt_integer(L, opts, "seed", 0));
  return g;
}

/* Labels (list) or a count at arg: returns the labels (NULL for a count), *n the number of items. */
static int64_t *labels_or_count(lua_State *L, int arg, int64_t *n) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    int ok;
    lua_Integer c = lua_tointegerx(L, arg, &ok);
    if (!ok || c < 1) luaL_argerror(L, arg, "expected a positive item count or a list of labels");
    *n = (int64_t)c;
    return NULL;
  }
  int64_t *labels = check_int_list(L, arg, arg, "labels", 0, n);
  if (*n < 1) luaL_argerror(L, arg, "labels: the list is empty");
  return labels;
}

/* Pushes a table {train =, val =, test =} (or {train =, test =} for parts = 2) of sorted 1-based indices. */
static void push_parts(lua_State *L, const int *part, int64_t n, int nparts, const char *const *names) {
  lua_createtable(L, 0, nparts);
  for (int p = 0; p < nparts; p++) {
    lua_newtable(L);
    lua_Integer k = 0;
    for (int64_t i = 0; i < n; i++)
      if (part[i] == p) {
        lua_pushinteger(L, (lua_Integer)i + 1);
        lua_rawseti(L, -2, ++k);
      }
    lua_setfield(L, -2, names[p]);
  }
}

/* rl.data.split(labels_or_count [, {train = 0.8, val = 0.1, test = 0.1, seed = 0, stratify = <labels given>,
**                rng = g}]) -> {train = indices, val = indices, test = indices} (1-based, ascending)
** When none of train/val/test is given the defaults are 0.8/0.1/0.1; otherwise a missing one is 0. */
static int l_data_split(lua_State *L) {
  static const char *const known[] = {"train", "val", "test", "seed", "stratify", "rng", NULL};
  static const char *const names[] = {"train", "val", "test"};
  rlb_check_options(L, 2, "data.split", known);
  int64_t n;
  int64_t *labels = labels_or_count(L, 1, &n);
  int any = rlb_opt_present(L, 2, "train") || rlb_opt_present(L, 2, "val") || rlb_opt_present(L, 2, "test");
  double frac[RL_SPLIT_PARTS];
  for (int s = 0; s < RL_SPLIT_PARTS; s++)
    frac[s] = rlb_opt_number(L, 2, names[s], any ? 0 : (s == RL_SPLIT_TRAIN ? 0.8 : 0.1));
  int stratify = rlb_opt_boolean(L, 2, "stratify", labels != NULL);
  if (stratify && !labels) return luaL_error(L, "data.split: stratify = true needs a list of labels, got a count");
  rl_rng *g = split_rng(L, 2, "data.split");
  int *part = lua_newuserdatauv(L, (size_t)n * sizeof(int), 0);
  if (rl_split_assign(stratify ? labels : NULL, n, frac, g, part)) return rlb_error(L);
  push_parts(L, part, n, RL_SPLIT_PARTS, names);
  return 1;
}

/* rl.data.kfold(labels_or_count, k [, {seed = 0, stratified = <labels given>, rng = g}])
** -> list of k {train = indices, test = indices} (1-based, ascending); test sets partition the items. */
static int l_data_kfold(lua_State *L) {
  static const char *const known[] = {"seed", "stratified", "rng", NULL};
  static const char *const names[] = {"test", "train"};
  rlb_check_options(L, 3, "data.kfold", known);
  int64_t n;
  int64_t *labels = labels_or_count(L, 1, &n);
  lua_Integer k = luaL_checkinteger(L, 2);
  if (k < 2) return luaL_argerror(L, 2, "k must be at least 2");
  if (k > n) return luaL_argerror(L, 2, lua_pushfstring(L, "k = %d is more than the %d items", (int)k, (int)n));
  int stratified = rlb_opt_boolean(L, 3, "stratified", labels != NULL);
  if (stratified && !labels) return luaL_error(L, "data.kfold: stratified = true needs a list of labels, got a count");
  rl_rng *g = split_rng(L, 3, "data.kfold");
  int *fold = lua_newuserdatauv(L, (size_t)n * sizeof(int), 0);
  if (rl_kfold_assign(stratified ? labels : NULL, n, (int64_t)k, g, fold)) return rlb_argerror(L, 2);
  int *part = lua_newuserdatauv(L, (size_t)n * sizeof(int), 0);
  lua_createtable(L, (int)k, 0);
  for (lua_Integer f = 0; f < k; f++) {
    for (int64_t i = 0; i < n; i++) part[i] = fold[i] == f ? 0 : 1;
    push_parts(L, part, n, 2, names);
    lua_rawseti(L, -2, f + 1);
  }
  return 1;
}

/* rl.data.batches(indices, batch_size [, {seed = 0, shuffle = true, drop_last = false, rng = g}])
** -> list of index lists (the given indices, in shuffled order, batch_size per batch; the last may be smaller
** unless drop_last). */
static int l_data_batches(lua_State *L) {
  static const char *const known[] = {"seed", "shuffle", "drop_last", "rng", NULL};
  rlb_check_options(L, 3, "data.batches", known);
  int64_t n;
  int64_t *idx = check_int_list(L, 1, 1, "indices", 1, &n);
  lua_Integer bs = luaL_checkinteger(L, 2);
  if (bs < 1) return luaL_argerror(L, 2, lua_pushfstring(L, "batch_size must be at least 1, got %d", (int)bs));
  int shuffle = rlb_opt_boolean(L, 3, "shuffle", 1), drop_last = rlb_opt_boolean(L, 3, "drop_last", 0);
  rl_rng *g = split_rng(L, 3, "data.batches");
  int64_t *order = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof(int64_t), 0), nb;
  if (rl_batch_order(n, (int64_t)bs, shuffle, drop_last, g, order, &nb)) return rlb_error(L);
  lua_createtable(L, (int)nb, 0);
  for (int64_t b = 0; b < nb; b++) {
    int64_t lo = b * bs, hi = lo + bs < n ? lo + bs : n;
    lua_createtable(L, (int)(hi - lo), 0);
    for (int64_t i = lo; i < hi; i++) {
      lua_pushinteger(L, (lua_Integer)idx[order[i]] + 1);
      lua_rawseti(L, -2, (lua_Integer)(i - lo) + 1);
    }
    lua_rawseti(L, -2, (lua_Integer)b + 1);
  }
  return 1;
}

/* ---------------------------------------------------------------- registration */

int rlb_open_data(lua_State *L) {
  luaL_newmetatable(L, RLB_H5BOX);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  luaL_newmetatable(L, RLB_DATASET);
  lua_newtable(L);
  luaL_setfuncs(L, dataset_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, d_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, d_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, d_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, d_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, RLB_DATASET);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"h5_read", l_h5_read},
                                 {"h5_read_int", l_h5_read_int},
                                 {"h5_list", l_h5_list},
                                 {"h5_attrs", l_h5_attrs},
                                 {"h5_exists", l_h5_exists},
                                 {"h5_write", l_h5_write},
                                 {"h5_write_attrs", l_h5_write_attrs},
                                 {"h5_create_group", l_h5_create_group},
                                 {"data_load", l_data_load},
                                 {"data_write", l_data_write},
                                 {"data_split", l_data_split},
                                 {"data_kfold", l_data_kfold},
                                 {"data_batches", l_data_batches},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
