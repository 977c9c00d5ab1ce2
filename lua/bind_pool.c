/*
** bind_pool.c -- Lua binding of core/pool (placeholder until the area lands).
*/
#include "bind.h"

int rlb_open_pool(lua_State *L) {
  (void)L;
  return 0;
}
