"""The lab: local HTTP(S) receivers, an OAuth token server and a test PKI on 127.0.0.1, and the
demo that fires sample rules into them (`make demo`). For tests and demonstrations only."""
