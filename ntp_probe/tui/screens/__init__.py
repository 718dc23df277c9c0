"""Modal screens of the probing app: help, model card, input prompt."""
