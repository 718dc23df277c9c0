"""Sweeps: a recipe file of training runs, run K at a time, resumed, listed for a scheduler, tabled and plotted.

A recipe file is TOML::

    [train]          # options every run shares: train's option names ('-' or '_')
    objective = "teacherless"
    degree = 2
    path-len = 3
    [grid]           # every combination of these lists is one run
    layers = [3, 4]
    seed = [1, 2]
    [[run]]          # and/or single runs: options on top of [train]
    layers = 6

Each run is an ordinary run directory under the sweep's ``--out DIR``, named from the options that vary
between the runs (``layers-4_seed-2``); a ``[[run]]`` may set ``name`` itself. A run may warm-start from another
run of the same sweep with ``init-from = "@NAME"`` (a curriculum): it starts once NAME has finished. With
``tracker = "wandb"`` (or ``"tensorboard"``) each run is its own tracked run, grouped by the sweep: its
``--tracker-group`` is the sweep directory's name unless the recipe sets ``tracker-group``.

This package is the engine (no UI): ``recipe.load`` parses and checks a recipe file against a schema of train's options
(the CLI builds it from the ``train`` command), ``recipe.Run`` knows its ``ntp-probe train`` line and its state on disk,
``runner.Sweep`` runs subprocesses K at a time, ``records`` reads finished and running runs back (table, Markdown, plot) and ``archive``
keeps them without weights.
"""
