/*
** bind_core.c -- Lua side of tensors, ragged sets, the rng and the methods every module shares.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bind.h"

/* ---------------------------------------------------------------- errors */

int rlb_error(lua_State *L) { return luaL_error(L, "%s", rl_error()); }

int rlb_argerror(lua_State *L, int arg) { return luaL_argerror(L, arg, rl_error()); }

/* ---------------------------------------------------------------- tensors */

rlb_tensor *rlb_newtensor(lua_State *L, int ndim, const int64_t *shape) {
  int64_t n;
  if (rl_shape_check(ndim, shape, &n)) rlb_error(L);
  size_t bytes = sizeof(rlb_tensor) + (size_t)n * sizeof(real);
  rlb_tensor *u = lua_newuserdatauv(L, bytes, 1);
  u->is_view = 0;
  u->t.data = (real *)(u + 1);
  u->t.ndim = ndim;
  for (int i = 0; i < RL_MAX_DIMS; i++) u->t.shape[i] = i < ndim ? shape[i] : 0;
  u->t.numel = n;
  memset(u->t.data, 0, (size_t)n * sizeof(real));
  luaL_setmetatable(L, RLB_TENSOR);
  return u;
}

rlb_tensor *rlb_newmatrix(lua_State *L, int64_t rows, int64_t cols) {
  int64_t shape[2] = {rows, cols};
  return rlb_newtensor(L, 2, shape);
}

rlb_tensor *rlb_pushview(lua_State *L, rl_tensor view, int owner_idx) {
  owner_idx = lua_absindex(L, owner_idx);
  rlb_tensor *u = lua_newuserdatauv(L, sizeof(rlb_tensor), 1);
  u->t = view;
  u->is_view = 1;
  luaL_setmetatable(L, RLB_TENSOR);
  lua_pushvalue(L, owner_idx);
  lua_setiuservalue(L, -2, 1);
  return u;
}

rlb_tensor *rlb_totensor(lua_State *L, int idx) { return luaL_testudata(L, idx, RLB_TENSOR); }

rlb_tensor *rlb_checktensor(lua_State *L, int idx) { return luaL_checkudata(L, idx, RLB_TENSOR); }

/* Reads the shape of a nested table of numbers; returns ndim. */
static int table_shape(lua_State *L, int idx, int64_t *shape) {
  int ndim = 0;
  lua_pushvalue(L, idx);
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (ndim == RL_MAX_DIMS) luaL_error(L, "tensor: nested tables deeper than %d levels", RL_MAX_DIMS);
    shape[ndim++] = (int64_t)lua_rawlen(L, -1);
    if (shape[ndim - 1] == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return ndim;
}

static void table_fill(lua_State *L, int idx, int depth, int ndim, const int64_t *shape, real **dst) {
  if (lua_type(L, idx) != LUA_TTABLE || (int64_t)lua_rawlen(L, idx) != shape[depth])
    luaL_error(L, "tensor: ragged nested table (level %d should have %I entries)", depth + 1,
               (lua_Integer)shape[depth]);
  for (int64_t i = 1; i <= shape[depth]; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i);
    if (depth + 1 < ndim) {
      table_fill(L, lua_gettop(L), depth + 1, ndim, shape, dst);
    } else {
      int isnum;
      lua_Number v = lua_tonumberx(L, -1, &isnum);
      if (!isnum) luaL_error(L, "tensor: entry %I at level %d is not a number", (lua_Integer)i, depth + 1);
      *(*dst)++ = (real)v;
    }
    lua_pop(L, 1);
  }
}

static rlb_tensor *tensor_from_table(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int64_t shape[RL_MAX_DIMS] = {0};
  int ndim = table_shape(L, idx, shape);
  rlb_tensor *u = rlb_newtensor(L, ndim, shape);
  real *dst = u->t.data;
  if (u->t.numel) table_fill(L, idx, 0, ndim, shape, &dst);
  return u;
}

rlb_tensor *rlb_checktensorlike(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  rlb_tensor *u = rlb_totensor(L, idx);
  if (u) return u;
  if (lua_type(L, idx) != LUA_TTABLE) {
    luaL_typeerror(L, idx, "tensor or table of numbers");
    return NULL;
  }
  u = tensor_from_table(L, idx);
  lua_replace(L, idx);
  return u;
}

static int64_t check_dim(lua_State *L, int arg) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, v >= 0, arg, "expected a non-negative size");
  return (int64_t)v;
}

/* rl.tensor(table) or rl.tensor(tensor) (copy) */
static int l_tensor(lua_State *L) {
  rlb_tensor *src = rlb_totensor(L, 1);
  if (src) {
    rlb_tensor *u = rlb_newtensor(L, src->t.ndim, src->t.shape);
    memcpy(u->t.data, src->t.data, (size_t)src->t.numel * sizeof(real));
    return 1;
  }
  luaL_argexpected(L, lua_type(L, 1) == LUA_TTABLE, 1, "table of numbers or tensor");
  tensor_from_table(L, 1);
  return 1;
}

/* rl.zeros(d1, d2, ...) */
static int l_zeros(lua_State *L) {
  int ndim = lua_gettop(L);
  luaL_argcheck(L, ndim >= 1 && ndim <= RL_MAX_DIMS, 1, "expected 1 to 4 sizes");
  int64_t shape[RL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) shape[i] = check_dim(L, i + 1);
  rlb_newtensor(L, ndim, shape);
  return 1;
}

/* rl.full(value, d1, d2, ...) */
static int l_full(lua_State *L) {
  real v = (real)luaL_checknumber(L, 1);
  int ndim = lua_gettop(L) - 1;
  luaL_argcheck(L, ndim >= 1 && ndim <= RL_MAX_DIMS, 2, "expected 1 to 4 sizes");
  int64_t shape[RL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) shape[i] = check_dim(L, i + 2);
  rlb_tensor *u = rlb_newtensor(L, ndim, shape);
  rl_fill(u->t.data, u->t.numel, v);
  return 1;
}

/* rl.randn(rng, d1, d2, ...) and rl.rand(rng, d1, ...) */
static int random_tensor(lua_State *L, int normal) {
  rl_rng *g = rlb_checkrng(L, 1);
  int ndim = lua_gettop(L) - 1;
  luaL_argcheck(L, ndim >= 1 && ndim <= RL_MAX_DIMS, 2, "expected 1 to 4 sizes");
  int64_t shape[RL_MAX_DIMS];
  for (int i = 0; i < ndim; i++) shape[i] = check_dim(L, i + 2);
  rlb_tensor *u = rlb_newtensor(L, ndim, shape);
  for (int64_t i = 0; i < u->t.numel; i++) u->t.data[i] = (real)(normal ? rl_rng_normal(g) : rl_rng_uniform(g));
  return 1;
}
static int l_randn(lua_State *L) { return random_tensor(L, 1); }
static int l_rand(lua_State *L) { return random_tensor(L, 0); }

static int t_shape(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  lua_createtable(L, u->t.ndim, 0);
  for (int i = 0; i < u->t.ndim; i++) {
    lua_pushinteger(L, (lua_Integer)u->t.shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int t_size(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_pushinteger(L, (lua_Integer)u->t.numel);
    return 1;
  }
  lua_Integer d = luaL_checkinteger(L, 2);
  luaL_argcheck(L, d >= 1 && d <= u->t.ndim, 2, "dimension out of range");
  lua_pushinteger(L, (lua_Integer)u->t.shape[d - 1]);
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, rlb_checktensor(L, 1)->t.ndim);
  return 1;
}

static void push_nested(lua_State *L, const rl_tensor *t, int depth, const real **src) {
  lua_createtable(L, (int)t->shape[depth], 0);
  for (int64_t i = 0; i < t->shape[depth]; i++) {
    if (depth + 1 < t->ndim)
      push_nested(L, t, depth + 1, src);
    else
      lua_pushnumber(L, (lua_Number) * (*src)++);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static int t_totable(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  const real *src = u->t.data;
  push_nested(L, &u->t, 0, &src);
  return 1;
}

/* Flat 0-based offset of 1-based indices at args 2.. (one index = flat position). */
static int64_t element_offset(lua_State *L, rlb_tensor *u, int first, int count) {
  if (count == 1) {
    lua_Integer i = luaL_checkinteger(L, first);
    luaL_argcheck(L, i >= 1 && i <= u->t.numel, first, "index out of range");
    return (int64_t)i - 1;
  }
  luaL_argcheck(L, count == u->t.ndim, first, "expected one index per dimension (or one flat index)");
  int64_t off = 0;
  for (int d = 0; d < count; d++) {
    lua_Integer i = luaL_checkinteger(L, first + d);
    luaL_argcheck(L, i >= 1 && i <= u->t.shape[d], first + d, "index out of range");
    off = off * u->t.shape[d] + (int64_t)(i - 1);
  }
  return off;
}

static int t_get(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  int64_t off = element_offset(L, u, 2, lua_gettop(L) - 1);
  lua_pushnumber(L, (lua_Number)u->t.data[off]);
  return 1;
}

/* t:set(i, [j, ...], value) */
static int t_set(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  int top = lua_gettop(L);
  luaL_argcheck(L, top >= 3, 3, "expected indices and a value");
  real v = (real)luaL_checknumber(L, top);
  int64_t off = element_offset(L, u, 2, top - 2);
  u->t.data[off] = v;
  return 0;
}

static int t_clone(lua_State *L) {
  rlb_tensor *src = rlb_checktensor(L, 1);
  rlb_tensor *u = rlb_newtensor(L, src->t.ndim, src->t.shape);
  memcpy(u->t.data, src->t.data, (size_t)src->t.numel * sizeof(real));
  return 1;
}

static int t_fill(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  rl_fill(u->t.data, u->t.numel, (real)luaL_checknumber(L, 2));
  lua_settop(L, 1);
  return 1;
}

/* t:copy(src): copies values of a tensor with the same number of elements into t */
static int t_copy(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  rlb_tensor *s = rlb_checktensorlike(L, 2);
  if (s->t.numel != u->t.numel)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected %d elements, got %d", (int)u->t.numel, (int)s->t.numel));
  memmove(u->t.data, s->t.data, (size_t)u->t.numel * sizeof(real));
  lua_settop(L, 1);
  return 1;
}

/* t:reshape(d1, d2, ...) -> new tensor (copy) */
static int t_reshape(lua_State *L) {
  rlb_tensor *src = rlb_checktensor(L, 1);
  int ndim = lua_gettop(L) - 1;
  luaL_argcheck(L, ndim >= 1 && ndim <= RL_MAX_DIMS, 2, "expected 1 to 4 sizes");
  int64_t shape[RL_MAX_DIMS], n = 1;
  for (int i = 0; i < ndim; i++) n *= (shape[i] = check_dim(L, i + 2));
  if (n != src->t.numel)
    return luaL_error(L, "bad argument to 'reshape' (new shape has %d elements, tensor has %d)", (int)n,
                      (int)src->t.numel);
  rlb_tensor *u = rlb_newtensor(L, ndim, shape);
  memcpy(u->t.data, src->t.data, (size_t)n * sizeof(real));
  return 1;
}

/* t:add(other [, alpha]) in place: t += alpha * other */
static int t_add(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  rlb_tensor *o = rlb_checktensorlike(L, 2);
  real a = (real)luaL_optnumber(L, 3, 1.0);
  if (o->t.numel != u->t.numel)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected %d elements, got %d", (int)u->t.numel, (int)o->t.numel));
  rl_axpy(u->t.numel, a, o->t.data, u->t.data);
  lua_settop(L, 1);
  return 1;
}

/* t:scale(a) in place */
static int t_scale(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  real a = (real)luaL_checknumber(L, 2);
  for (int64_t i = 0; i < u->t.numel; i++) u->t.data[i] *= a;
  lua_settop(L, 1);
  return 1;
}

static int t_sum(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  double s = 0;
  for (int64_t i = 0; i < u->t.numel; i++) s += u->t.data[i];
  lua_pushnumber(L, s);
  return 1;
}

/* t:dot(other): sum of elementwise products */
static int t_dot(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  rlb_tensor *o = rlb_checktensorlike(L, 2);
  if (o->t.numel != u->t.numel)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected %d elements, got %d", (int)u->t.numel, (int)o->t.numel));
  double s = 0;
  for (int64_t i = 0; i < u->t.numel; i++) s += (double)u->t.data[i] * o->t.data[i];
  lua_pushnumber(L, s);
  return 1;
}

static int t_norm(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  double s = 0;
  for (int64_t i = 0; i < u->t.numel; i++) s += (double)u->t.data[i] * u->t.data[i];
  lua_pushnumber(L, sqrt(s));
  return 1;
}

static int t_max(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  luaL_argcheck(L, u->t.numel > 0, 1, "empty tensor");
  real m = u->t.data[0];
  for (int64_t i = 1; i < u->t.numel; i++) m = u->t.data[i] > m ? u->t.data[i] : m;
  lua_pushnumber(L, m);
  return 1;
}

static int t_min(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  luaL_argcheck(L, u->t.numel > 0, 1, "empty tensor");
  real m = u->t.data[0];
  for (int64_t i = 1; i < u->t.numel; i++) m = u->t.data[i] < m ? u->t.data[i] : m;
  lua_pushnumber(L, m);
  return 1;
}

/* t:maxabs_diff(other): max |t - other| (NaN-aware: NaN anywhere gives NaN) */
static int t_maxdiff(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  rlb_tensor *o = rlb_checktensorlike(L, 2);
  if (o->t.numel != u->t.numel)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected %d elements, got %d", (int)u->t.numel, (int)o->t.numel));
  double m = 0;
  for (int64_t i = 0; i < u->t.numel; i++) {
    double d = fabs((double)u->t.data[i] - o->t.data[i]);
    if (isnan(d)) {
      m = NAN;
      break;
    }
    if (d > m) m = d;
  }
  lua_pushnumber(L, m);
  return 1;
}

/* t:argmax(): 1-based column index of the largest value of each row (a Lua table) */
static int t_argmax(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  int64_t r = rl_rows(&u->t), c = rl_cols(&u->t);
  luaL_argcheck(L, c > 0, 1, "tensor has no columns");
  lua_createtable(L, (int)r, 0);
  for (int64_t i = 0; i < r; i++) {
    const real *row = u->t.data + i * c;
    int64_t best = 0;
    for (int64_t j = 1; j < c; j++)
      if (row[j] > row[best]) best = j;
    lua_pushinteger(L, (lua_Integer)best + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* t:rows(list) -> new tensor with the given 1-based rows */
static int t_rows(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t r = rl_rows(&u->t), c = rl_cols(&u->t), n = (int64_t)lua_rawlen(L, 2);
  rlb_tensor *o = rlb_newmatrix(L, n, c);
  for (int64_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    lua_Integer k = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (k < 1 || k > r) return luaL_argerror(L, 2, lua_pushfstring(L, "row index %d out of range 1..%d", (int)k, (int)r));
    memcpy(o->t.data + i * c, u->t.data + (k - 1) * c, (size_t)c * sizeof(real));
  }
  return 1;
}

/* t:matmul(other [, trans_a, trans_b]) -> new matrix */
static int t_matmul(lua_State *L);

static int t_isfinite(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  for (int64_t i = 0; i < u->t.numel; i++)
    if (!isfinite(u->t.data[i])) {
      lua_pushboolean(L, 0);
      return 1;
    }
  lua_pushboolean(L, 1);
  return 1;
}

static int t_tostring(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "rotlab.tensor(");
  for (int i = 0; i < u->t.ndim; i++) {
    char s[32];
    snprintf(s, sizeof s, i ? " x %lld" : "%lld", (long long)u->t.shape[i]);
    luaL_addstring(&b, s);
  }
  luaL_addstring(&b, ", " RL_REAL_NAME ")");
  luaL_pushresult(&b);
  return 1;
}

static int t_len(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  lua_pushinteger(L, (lua_Integer)u->t.shape[0]);
  return 1;
}

#include "../core/blas.h"
static int t_matmul(lua_State *L) {
  rlb_tensor *a = rlb_checktensor(L, 1);
  rlb_tensor *b = rlb_checktensorlike(L, 2);
  int ta = lua_toboolean(L, 3), tb = lua_toboolean(L, 4);
  luaL_argcheck(L, a->t.ndim <= 2, 1, "expected a matrix");
  luaL_argcheck(L, b->t.ndim <= 2, 2, "expected a matrix");
  int64_t ar = rl_rows(&a->t), ac = rl_cols(&a->t), br = rl_rows(&b->t), bc = rl_cols(&b->t);
  int64_t m = ta ? ac : ar, k = ta ? ar : ac, k2 = tb ? bc : br, n = tb ? br : bc;
  if (k != k2)
    return luaL_argerror(L, 2, lua_pushfstring(L, "inner dimensions differ (%d vs %d)", (int)k, (int)k2));
  rlb_tensor *c = rlb_newmatrix(L, m, n);
  rl_gemm(ta, tb, m, n, k, 1, a->t.data, ac, b->t.data, bc, 0, c->t.data, n);
  return 1;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", t_shape}, {"size", t_size},       {"dim", t_dim},         {"totable", t_totable}, {"get", t_get},
    {"set", t_set},     {"clone", t_clone},     {"fill", t_fill},       {"copy", t_copy},       {"reshape", t_reshape},
    {"add", t_add},     {"scale", t_scale},     {"sum", t_sum},         {"dot", t_dot},         {"norm", t_norm},
    {"max", t_max},     {"min", t_min},         {"maxdiff", t_maxdiff}, {"argmax", t_argmax},   {"rows", t_rows},
    {"matmul", t_matmul}, {"isfinite", t_isfinite}, {NULL, NULL}};

/* ---------------------------------------------------------------- sets */

rlb_sets *rlb_tosets(lua_State *L, int idx) { return luaL_testudata(L, idx, RLB_SETS); }

rlb_sets *rlb_pushsets(lua_State *L, int values_idx, int nlevels, const int64_t *const *offsets,
                       const int64_t *count) {
  values_idx = lua_absindex(L, values_idx);
  rlb_tensor *v = rlb_checktensor(L, values_idx);
  size_t total = 0;
  for (int k = 0; k < nlevels; k++) total += (size_t)count[k] + 1;
  rlb_sets *s = lua_newuserdatauv(L, sizeof(rlb_sets) + total * sizeof(int64_t), 1);
  memset(&s->b, 0, sizeof s->b);
  s->b.values = v->t;
  s->b.nlevels = nlevels;
  int64_t *dst = s->storage;
  for (int k = 0; k < nlevels; k++) {
    memcpy(dst, offsets[k], ((size_t)count[k] + 1) * sizeof(int64_t));
    s->b.offsets[k] = dst;
    s->b.count[k] = count[k];
    dst += count[k] + 1;
  }
  luaL_setmetatable(L, RLB_SETS);
  lua_pushvalue(L, values_idx);
  lua_setiuservalue(L, -2, 1);
  return s;
}

/* Reads a Lua list of integers (or a tensor of integral values) at idx into a fresh int64 buffer userdata. */
static int64_t *check_offsets(lua_State *L, int idx, int64_t *count, const char *what) {
  rlb_tensor *t = rlb_totensor(L, idx);
  int64_t n;
  if (t)
    n = t->t.numel;
  else {
    if (lua_type(L, idx) != LUA_TTABLE)
      luaL_argerror(L, idx, lua_pushfstring(L, "expected %s as a list of integers or a tensor", what));
    n = (int64_t)lua_rawlen(L, idx);
  }
  if (n < 2) luaL_argerror(L, idx, lua_pushfstring(L, "%s need at least 2 entries (B+1 for B sets)", what));
  int64_t *buf = lua_newuserdatauv(L, (size_t)n * sizeof(int64_t), 0);
  for (int64_t i = 0; i < n; i++) {
    double v;
    if (t)
      v = t->t.data[i];
    else {
      lua_rawgeti(L, idx, (lua_Integer)i + 1);
      int ok;
      v = (double)lua_tonumberx(L, -1, &ok);
      lua_pop(L, 1);
      if (!ok) luaL_argerror(L, idx, lua_pushfstring(L, "%s entry %d is not a number", what, (int)i + 1));
    }
    if (v != floor(v)) luaL_argerror(L, idx, lua_pushfstring(L, "%s entry %d is not an integer", what, (int)i + 1));
    if (!(fabs(v) <= (double)RL_MAX_DIM)) /* (Inf, or beyond any row count: the cast below would be undefined) */
      luaL_argerror(L, idx, lua_pushfstring(L, "%s entry %d is out of range (|value| > 2^40)", what, (int)i + 1));
    buf[i] = (int64_t)v;
  }
  *count = n - 1;
  return buf;
}

/* rl.sets(values, offsets) */
static int l_sets(lua_State *L) {
  rlb_tensor *v = rlb_checktensorlike(L, 1);
  if (v->t.ndim != 2)
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected a 2-D tensor (rows x D), got %d-D", v->t.ndim));
  int64_t count;
  int64_t *off = check_offsets(L, 2, &count, "offsets");
  if (rl_offsets_check(off, count, v->t.shape[0], "offsets")) return rlb_argerror(L, 2);
  const int64_t *levels[1] = {off};
  rlb_pushsets(L, 1, 1, levels, &count);
  return 1;
}

/* rl.groups(sets, group_offsets): adds a level that groups the sets (set-of-sets) */
static int l_groups(lua_State *L) {
  rlb_sets *s = luaL_checkudata(L, 1, RLB_SETS);
  luaL_argcheck(L, s->b.nlevels < RL_MAX_LEVELS, 1, "too many nesting levels");
  int64_t count;
  int64_t *off = check_offsets(L, 2, &count, "group offsets");
  int top = s->b.nlevels;
  if (rl_offsets_check(off, count, s->b.count[top - 1], "group offsets")) return rlb_argerror(L, 2);
  const int64_t *levels[RL_MAX_LEVELS];
  int64_t counts[RL_MAX_LEVELS];
  for (int k = 0; k < top; k++) {
    levels[k] = s->b.offsets[k];
    counts[k] = s->b.count[k];
  }
  levels[top] = off;
  counts[top] = count;
  lua_getiuservalue(L, 1, 1);
  rlb_pushsets(L, -1, top + 1, levels, counts);
  return 1;
}

void rlb_checkbatch(lua_State *L, int idx, rl_batch *out) {
  rlb_sets *s = rlb_tosets(L, idx);
  if (s) {
    *out = s->b;
    return;
  }
  rlb_tensor *t = rlb_totensor(L, idx);
  if (!t) {
    luaL_typeerror(L, idx, "tensor or sets");
    return;
  }
  memset(out, 0, sizeof *out);
  out->values = t->t;
  out->nlevels = 0;
}

static int s_values(lua_State *L) {
  luaL_checkudata(L, 1, RLB_SETS);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

/* s:offsets([level]) -> Lua list (0-based offsets as stored) */
static int s_offsets(lua_State *L) {
  rlb_sets *s = luaL_checkudata(L, 1, RLB_SETS);
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 1 && k <= s->b.nlevels, 2, "level out of range");
  lua_createtable(L, (int)s->b.count[k - 1] + 1, 0);
  for (int64_t i = 0; i <= s->b.count[k - 1]; i++) {
    lua_pushinteger(L, (lua_Integer)s->b.offsets[k - 1][i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int s_count(lua_State *L) {
  rlb_sets *s = luaL_checkudata(L, 1, RLB_SETS);
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 1 && k <= s->b.nlevels, 2, "level out of range");
  lua_pushinteger(L, (lua_Integer)s->b.count[k - 1]);
  return 1;
}

static int s_levels(lua_State *L) {
  lua_pushinteger(L, ((rlb_sets *)luaL_checkudata(L, 1, RLB_SETS))->b.nlevels);
  return 1;
}

/* s:with_values(tensor) -> sets with the same offsets over other values (same row count) */
static int s_with_values(lua_State *L) {
  rlb_sets *s = luaL_checkudata(L, 1, RLB_SETS);
  rlb_tensor *v = rlb_checktensorlike(L, 2);
  if (v->t.ndim != 2 || v->t.shape[0] != rl_rows(&s->b.values))
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected a 2-D tensor with %d rows", (int)rl_rows(&s->b.values)));
  rlb_pushsets(L, 2, s->b.nlevels, s->b.offsets, s->b.count);
  return 1;
}

static int s_tostring(lua_State *L) {
  rlb_sets *s = luaL_checkudata(L, 1, RLB_SETS);
  lua_pushfstring(L, "rotlab.sets(%d sets, %d rows x %d, %d level(s))", (int)s->b.count[0],
                  (int)rl_rows(&s->b.values), (int)rl_cols(&s->b.values), s->b.nlevels);
  return 1;
}

static const luaL_Reg sets_methods[] = {{"values", s_values}, {"offsets", s_offsets},
                                        {"count", s_count},   {"levels", s_levels},
                                        {"with_values", s_with_values}, {NULL, NULL}};

/* ---------------------------------------------------------------- rng */

rl_rng *rlb_checkrng(lua_State *L, int idx) { return luaL_checkudata(L, idx, RLB_RNG); }

static rl_rng *new_rng(lua_State *L, uint64_t seed) {
  rl_rng *g = lua_newuserdatauv(L, sizeof(rl_rng), 0);
  rl_rng_seed(g, seed);
  luaL_setmetatable(L, RLB_RNG);
  return g;
}

static int l_rng(lua_State *L) {
  lua_Integer seed = luaL_optinteger(L, 1, 0);
  new_rng(L, (uint64_t)seed);
  return 1;
}

#define DEFAULT_RNG_KEY "rotlab.default_rng"

rl_rng *rlb_default_rng(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_RNG_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    new_rng(L, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, DEFAULT_RNG_KEY);
  }
  return lua_touserdata(L, -1);
}

rl_rng *rlb_opt_rng(lua_State *L, int opts_idx) {
  if (opts_idx && lua_type(L, opts_idx) == LUA_TTABLE) {
    lua_getfield(L, opts_idx, "rng");
    if (!lua_isnil(L, -1)) {
      if (!luaL_testudata(L, -1, RLB_RNG)) luaL_error(L, "option 'rng' must be an rl.rng generator");
      return lua_touserdata(L, -1);
    }
    lua_pop(L, 1);
  }
  return rlb_default_rng(L);
}

/* rl.manual_seed(seed): reseeds the default generator */
static int l_manual_seed(lua_State *L) {
  lua_Integer seed = luaL_checkinteger(L, 1);
  rl_rng *g = rlb_default_rng(L);
  rl_rng_seed(g, (uint64_t)seed);
  return 0;
}

/* rl.wall_time() -> monotonic wall-clock seconds (for timing; not a date) */
static int l_wall_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
  return 1;
}

/* rl.isatty(fd) -> true when file descriptor fd (0, 1, 2) is a terminal (progress bars) */
static int l_isatty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "expected 0, 1 or 2");
  lua_pushboolean(L, isatty((int)fd));
  return 1;
}

static int l_default_rng(lua_State *L) {
  rlb_default_rng(L);
  return 1;
}

static int g_uniform(lua_State *L) {
  rl_rng *g = rlb_checkrng(L, 1);
  lua_pushnumber(L, rl_rng_uniform(g));
  return 1;
}
static int g_normal(lua_State *L) {
  rl_rng *g = rlb_checkrng(L, 1);
  lua_pushnumber(L, rl_rng_normal(g));
  return 1;
}
/* g:int(n) -> uniform integer in 1..n */
static int g_int(lua_State *L) {
  rl_rng *g = rlb_checkrng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2, "expected a positive upper bound");
  lua_pushinteger(L, (lua_Integer)rl_rng_below(g, (uint64_t)n) + 1);
  return 1;
}
/* g:permutation(n) -> shuffled list 1..n */
static int g_permutation(lua_State *L) {
  rl_rng *g = rlb_checkrng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "expected a non-negative length");
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushinteger(L, i);
    lua_rawseti(L, -2, i);
  }
  for (lua_Integer i = n; i > 1; i--) {
    lua_Integer j = (lua_Integer)rl_rng_below(g, (uint64_t)i) + 1;
    lua_rawgeti(L, -1, i);
    lua_rawgeti(L, -2, j);
    lua_rawseti(L, -3, i);
    lua_rawseti(L, -2, j);
  }
  return 1;
}
static int g_seed(lua_State *L) {
  rl_rng *g = rlb_checkrng(L, 1);
  rl_rng_seed(g, (uint64_t)luaL_checkinteger(L, 2));
  return 0;
}

static const luaL_Reg rng_methods[] = {{"uniform", g_uniform}, {"normal", g_normal}, {"int", g_int},
                                       {"permutation", g_permutation}, {"seed", g_seed}, {NULL, NULL}};

/* ---------------------------------------------------------------- modules */

rlb_module *rlb_newmodule(lua_State *L) {
  rlb_module *u = lua_newuserdatauv(L, sizeof(rlb_module), 1);
  u->m = NULL;
  luaL_setmetatable(L, RLB_MODULE);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return u;
}

rl_module *rlb_checkmodule(lua_State *L, int idx) {
  rlb_module *u = luaL_checkudata(L, idx, RLB_MODULE);
  if (!u->m) luaL_argerror(L, idx, "module has been freed");
  return u->m;
}

void rlb_keep(lua_State *L, int module_idx, int value_idx) {
  value_idx = lua_absindex(L, value_idx);
  lua_getiuservalue(L, module_idx, 1);
  lua_pushvalue(L, value_idx);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

#define EXTRAS_KEY "rotlab.module_extras"

void rlb_register_methods(lua_State *L, const char *kind, const luaL_Reg *methods) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, EXTRAS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, EXTRAS_KEY);
  }
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, kind);
  lua_pop(L, 1);
}

/* m:forward(input) -> output (tensor; sets when the input had more levels than the module consumes) */
static int m_forward(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  rl_batch in;
  rlb_checkbatch(L, 2, &in);
  int64_t rows, cols;
  if (rl_module_out_shape(m, &in, &rows, &cols)) return rlb_argerror(L, 2);
  rlb_newmatrix(L, rows, cols);
  int out_idx = lua_gettop(L);
  rl_tensor out = rlb_totensor(L, out_idx)->t;
  if (rl_module_forward(m, &in, &out)) return rlb_error(L);
  int drop = m->pools; /* levels consumed: the remaining ones shift down */
  if (in.nlevels > drop) rlb_pushsets(L, out_idx, in.nlevels - drop, in.offsets + drop, in.count + drop);
  return 1;
}

/* m:backward(input, grad_output [, need_grad_input=true]) -> gradient w.r.t. the input's values (tensor) */
static int m_backward(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  rl_batch in, gout;
  rlb_checkbatch(L, 2, &in);
  if (lua_type(L, 3) == LUA_TTABLE) rlb_checktensorlike(L, 3);
  rlb_checkbatch(L, 3, &gout);
  int need = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  rl_tensor *gin = NULL;
  if (need) {
    rlb_tensor *g = rlb_newtensor(L, in.values.ndim, in.values.shape);
    gin = &g->t;
  } else {
    lua_pushnil(L);
  }
  if (rl_module_backward(m, &in, &gout.values, gin)) return rlb_error(L);
  return 1;
}

static rl_param *check_param(lua_State *L, rl_module *m, int idx) {
  const char *name = luaL_checkstring(L, idx);
  rl_param *p = rl_module_param(m, name);
  if (!p) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < m->nparams; i++) {
      if (i) luaL_addstring(&b, ", ");
      luaL_addstring(&b, m->params[i].name);
    }
    luaL_pushresult(&b);
    luaL_argerror(L, idx, lua_pushfstring(L, "%s has no parameter '%s' (it has: %s)", m->ops->kind, name,
                                           m->nparams ? lua_tostring(L, -1) : "none"));
  }
  return p;
}

static void push_copy(lua_State *L, const rl_tensor *t) {
  rlb_tensor *u = rlb_newtensor(L, t->ndim, t->shape);
  memcpy(u->t.data, t->data, (size_t)t->numel * sizeof(real));
}

static int m_param(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  push_copy(L, &check_param(L, m, 2)->value);
  return 1;
}

static int m_grad(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  push_copy(L, &check_param(L, m, 2)->grad);
  return 1;
}

/* m:set_param(name, tensor or table) -- copies the values in (same number of elements) */
static int m_set_param(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  rl_param *p = check_param(L, m, 2);
  rlb_tensor *v;
  if (lua_type(L, 3) == LUA_TNUMBER && p->value.numel == 1) {
    p->value.data[0] = (real)lua_tonumber(L, 3);
    lua_settop(L, 1);
    return 1;
  }
  v = rlb_checktensorlike(L, 3);
  if (v->t.numel != p->value.numel) {
    char shape[64] = "";
    for (int i = 0; i < p->value.ndim; i++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), i ? " x %lld" : "%lld",
               (long long)p->value.shape[i]);
    return luaL_argerror(L, 3, lua_pushfstring(L, "parameter '%s' has shape %s (%d values), got %d values", p->name,
                                               shape, (int)p->value.numel, (int)v->t.numel));
  }
  if (rl_expect_finite(v->t.data, v->t.numel, p->name)) return rlb_argerror(L, 3);
  memcpy(p->value.data, v->t.data, (size_t)p->value.numel * sizeof(real));
  lua_settop(L, 1);
  return 1;
}

/* m:parameters() -> list of {name=, value=view, grad=view, module=m} (views write through) */
static int m_parameters(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  lua_createtable(L, m->nparams, 0);
  for (int i = 0; i < m->nparams; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, m->params[i].name);
    lua_setfield(L, -2, "name");
    rlb_pushview(L, m->params[i].value, 1);
    lua_setfield(L, -2, "value");
    rlb_pushview(L, m->params[i].grad, 1);
    lua_setfield(L, -2, "grad");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "module");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_zero_grad(lua_State *L) {
  rl_module_zero_grad(rlb_checkmodule(L, 1));
  lua_settop(L, 1);
  return 1;
}

static int m_train(lua_State *L) {
  rl_module *m = rlb_checkmodule(L, 1);
  m->training = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  lua_settop(L, 1);
  return 1;
}

static int m_eval(lua_State *L) {
  rlb_checkmodule(L, 1)->training = 0;
  lua_settop(L, 1);
  return 1;
}

static int m_kind(lua_State *L) {
  lua_pushstring(L, rlb_checkmodule(L, 1)->ops->kind);
  return 1;
}

static int m_is_training(lua_State *L) {
  lua_pushboolean(L, rlb_checkmodule(L, 1)->training);
  return 1;
}

static int m_gc(lua_State *L) {
  rlb_module *u = luaL_checkudata(L, 1, RLB_MODULE);
  rl_module_free(u->m);
  u->m = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  rlb_module *u = luaL_checkudata(L, 1, RLB_MODULE);
  if (!u->m) {
    lua_pushstring(L, "rotlab.module (freed)");
    return 1;
  }
  lua_pushfstring(L, "rotlab.module(%s, %d parameter tensors)", u->m->ops->kind, u->m->nparams);
  return 1;
}

static const luaL_Reg module_methods[] = {
    {"forward", m_forward},     {"backward", m_backward},       {"param", m_param},
    {"grad", m_grad},           {"set_param", m_set_param},     {"parameters", m_parameters},
    {"zero_grad", m_zero_grad}, {"train", m_train},             {"eval", m_eval},
    {"kind", m_kind},           {"is_training", m_is_training}, {"free", m_gc},
    {NULL, NULL}};

/* __index: shared methods first, then the methods registered for the module's kind. */
static int m_index(lua_State *L) {
  rlb_module *u = luaL_checkudata(L, 1, RLB_MODULE);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (!u->m) return 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, EXTRAS_KEY) != LUA_TTABLE) return 0;
  if (lua_getfield(L, -1, u->m->ops->kind) != LUA_TTABLE) return 0;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* ---------------------------------------------------------------- options */

void rlb_check_options(lua_State *L, int idx, const char *fname, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE) {
    luaL_error(L, "%s: expected a table of options, got %s", fname, luaL_typename(L, idx));
    return;
  }
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (const char *const *p = known; *p; p++)
        if (strcmp(*p, k) == 0) ok = 1;
    }
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *const *p = known; *p; p++) {
        if (p != known) luaL_addstring(&b, ", ");
        luaL_addstring(&b, *p);
      }
      luaL_pushresult(&b);
      const char *names = lua_tostring(L, -1);
      const char *key = luaL_tolstring(L, -2, NULL); /* separate statements: C leaves argument order unspecified */
      luaL_error(L, "%s: unknown option '%s' (known options: %s)", fname, key, names);
    }
  }
}

int rlb_opt_present(lua_State *L, int idx, const char *key) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  int t = lua_getfield(L, idx, key);
  lua_pop(L, 1);
  return t != LUA_TNIL;
}

lua_Integer rlb_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def) {
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  lua_getfield(L, idx, key);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "option '%s': expected an integer, got %s", key, luaL_tolstring(L, -1, NULL));
  }
  lua_pop(L, 1);
  return v;
}

lua_Number rlb_opt_number(lua_State *L, int idx, const char *key, lua_Number def) {
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  lua_getfield(L, idx, key);
  lua_Number v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tonumberx(L, -1, &ok);
    if (!ok || !isfinite(v))
      luaL_error(L, "option '%s': expected a finite number, got %s", key, luaL_tolstring(L, -1, NULL));
  }
  lua_pop(L, 1);
  return v;
}

int rlb_opt_boolean(lua_State *L, int idx, const char *key, int def) {
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  lua_getfield(L, idx, key);
  int v = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) luaL_error(L, "option '%s': expected a boolean, got %s", key, luaL_typename(L, -1));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

const char *rlb_opt_string(lua_State *L, int idx, const char *key, const char *def) {
  if (lua_type(L, idx) != LUA_TTABLE) return def;
  lua_getfield(L, idx, key);
  const char *v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s': expected a string, got %s", key, luaL_typename(L, -1));
    v = lua_tostring(L, -1); /* the option table keeps the string alive */
  }
  lua_pop(L, 1);
  return v;
}

int rlb_opt_choice(lua_State *L, int idx, const char *key, const char *def, const char *const *names) {
  const char *v = rlb_opt_string(L, idx, key, def);
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], v) == 0) return i;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; names[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addchar(&b, '"');
    luaL_addstring(&b, names[i]);
    luaL_addchar(&b, '"');
  }
  luaL_pushresult(&b);
  return luaL_error(L, "option '%s': unknown value \"%s\" (expected one of %s)", key, v, lua_tostring(L, -1));
}

/* ---------------------------------------------------------------- registration */

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
}

int rlb_open_core(lua_State *L) {
  new_class(L, RLB_TENSOR, tensor_methods);
  lua_pushcfunction(L, t_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, t_len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);

  new_class(L, RLB_SETS, sets_methods);
  lua_pushcfunction(L, s_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  new_class(L, RLB_RNG, rng_methods);
  lua_pop(L, 1);

  luaL_newmetatable(L, RLB_MODULE);
  lua_newtable(L);
  luaL_setfuncs(L, module_methods, 0);
  lua_pushcclosure(L, m_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, m_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"tensor", l_tensor},   {"zeros", l_zeros},           {"full", l_full},
                                 {"randn", l_randn},     {"rand", l_rand},             {"sets", l_sets},
                                 {"groups", l_groups},   {"rng", l_rng},               {"manual_seed", l_manual_seed},
                                 {"default_rng", l_default_rng}, {"wall_time", l_wall_time}, {"isatty", l_isatty}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushstring(L, RL_REAL_NAME);
  lua_setfield(L, -2, "real");
  return 0;
}
