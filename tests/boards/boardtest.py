"""Constants shared by the board tests (a module of its own: `conftest` names clash across folders)."""

REAL_BOARDS = ["ESP32_GENERIC", "ESP32_GENERIC_S3", "ESP32_GENERIC_C3"]
HAVE_TRUSTSTORE = True  # keyhook.rules.truststore (the HTTP layer's writer) is in the tree


def ca_select() -> list[str]:
    # Three well-known roots keep each build small; the full bundle is built once in test_build.
    return ["ISRG Root X1", "ISRG Root X2", "DigiCert Global Root G2"]
