"""The keyhook cloud: the integrator API (the public ekey bionyx third-party API shape), an
OAuth 2.0 authorization server, and the app's side of it.

Every webhook definition is sealed with HPKE (RFC 9180) to the system's integration public key
the moment it arrives; the cloud never holds the private key (the app keeps it sealed under the
system key). Layers: `models`/`db` (SQLAlchemy, Alembic), `sealing` (HPKE), `oauth` (Authlib),
`api` (FastAPI), `admin` (owner-side scripting), `app` (the app's client), `serve` (uvicorn, TLS).
"""
