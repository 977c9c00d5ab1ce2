/*
** bind_data.c -- Lua binding of core/data (placeholder until the area lands).
*/
#include "bind.h"

int rlb_open_data(lua_State *L) {
  (void)L;
  return 0;
}
