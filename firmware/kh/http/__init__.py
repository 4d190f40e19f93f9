# HTTP layer: HTTP/1.1 client, the five transport security behaviours, keep-alive, limits.
