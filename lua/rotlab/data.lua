--[[ rotlab.data -- placeholder until the area lands. ]]
return {}
