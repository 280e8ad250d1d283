"""run.json: the versioned, complete record of a run (raw results included).

Modules:
    write      the current schema, written from a run's record
    read       every schema version talbench has written, read back into records
"""
