--[[ rotlab.db -- placeholder until the area lands. ]]
return {}
