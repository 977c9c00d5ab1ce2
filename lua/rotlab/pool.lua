--[[ rotlab.pool -- placeholder until the area lands. ]]
return {}
