"""Chapter analyses of committed run records: tables, preconditions and claims, one module per chapter.

No training run imports these modules, so editing one never makes a record stale (they are in no record's key).
"""
