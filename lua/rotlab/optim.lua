--[[ rotlab.optim -- placeholder until the area lands. ]]
return {}
