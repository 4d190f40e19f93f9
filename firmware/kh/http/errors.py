# One exception for every refused or failed fire. `code` is stable and machine-readable
# (tls_untrusted, tls_hostname, tls_expired, tls_not_yet_valid, tls_pin_mismatch,
# tls_unsupported (no TLS version, group or cipher in common), tls_unusable_certificate (a
# certificate the TLS library cannot parse), tls_handshake,
# insecure_remote, timeout, connect, dns, token_endpoint, invalid_definition, ...);
# `message` says what to do. Neither may ever contain a token, header value or body.


class FireError(Exception):
    def __init__(self, code, message=""):
        super().__init__(code, message)
        self.code = code
        self.message = message
