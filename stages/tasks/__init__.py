"""Per task: validate a row and turn it into training text. `data.task` picks one."""
