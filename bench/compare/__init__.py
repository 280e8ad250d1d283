"""`talbench compare`: what changed between two runs.  Pure: no I/O (the CLI reads and writes).

Modules:
    changes    per check and subject, the change and its outcome (the regression rule)
    stats      the confidence intervals of a change (bootstrap, two proportions)
    render     a comparison as JSON and as a self-contained HTML page
"""
