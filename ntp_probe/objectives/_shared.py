"""What the registry (``__init__``) and the objectives share, in a module of its own so that neither imports the
other for it: ``base`` and the objective modules import from here, the package re-exports it."""

IGNORE = -100  # target id that carries no loss
