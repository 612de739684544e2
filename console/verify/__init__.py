"""`verify`: prove that GrowPanel holds what the source says, row by row and month by month.

    target     which run (and so which mapping, data source and key) is verified
    remote     the client's read endpoints, paced and retried (the importer's rate limit and retry policy)
    listing    reading GET /data/{kind}?source=DS whole: offset paging, or one request of limit = count
    spill      the listing spilled to a temporary table, read back in id order with the audit
    source     the source read through the run's mapping, in id order, normalised like the importer
    compare    one source payload against one stored object, field by field
    rows       the sorted merge of both sides into per-entity counts and examples
    mrr        the rules of docs/mrr.md (pure functions)
    months     the source's month figures, per currency
    mrr_check  GET /reports/mrr per currency, the unit, the month lines and the drill-down to customers
    report     the result documents, as JSON and as text
    check      the whole check, as `verify` and `start --verify` run it
"""
