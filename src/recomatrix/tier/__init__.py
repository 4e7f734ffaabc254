"""The server tier: N API processes and stream workers sharing one Redis.

    recomatrix serve --backend redis --workers N      recomatrix worker (one or more)
      API process x N                                   StreamProcessor over the bus group
        main index memory-mapped from the snapshot        applies events to Redis
        delta index fed by the item feed                  item vectors from the snapshot
        reads Redis, publishes events to Redis Streams      + the item feed

`snapshot` saves and loads what a deployment starts from, `seed` copies a bootstrapped
engine's live state into Redis, `broadcast` carries item changes between processes,
`api` builds an API process, `worker` runs a stream worker.
"""
