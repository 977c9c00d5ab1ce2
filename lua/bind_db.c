/*
** bind_db.c -- Lua binding of core/db (placeholder until the area lands).
*/
#include "bind.h"

int rlb_open_db(lua_State *L) {
  (void)L;
  return 0;
}
