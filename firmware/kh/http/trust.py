# The device trust store: DER roots on the file system, one file each, named after a hash of the
# certificate's subject, so the engine loads into mbedTLS only the root(s) a chain points at:
#   <dir>/<h>.der, <dir>/<h>.1.der, ...   h = hex(sha256(subject Name DER)[:8])
# The host writes it (keyhook.rules.truststore.write_trust_store). Which roots served an origin is
# remembered (in memory, and in <state>/ca-hints when a state dir is given) so that the next cold
# connection to that origin needs one handshake; the first one learns the issuer and retries.
import binascii
from micropython import const
import hashlib
from kh.store import files

_MAX_PER_NAME = const(8)
_MAX_HINTS = const(16)


def name_hash(name_der):
    return binascii.hexlify(hashlib.sha256(bytes(name_der)).digest()[:8]).decode()


class Trust:
    def __init__(self, trust_dir=None, state_dir=None):
        self.dir = trust_dir
        self.hints = {}
        self._hint_file = (state_dir + "/ca-hints") if state_dir else None
        if self._hint_file:
            raw = files.read(self._hint_file)
            if raw:
                for line in raw.decode().split("\n"):
                    parts = line.split(" ")
                    if len(parts) == 2 and parts[1]:
                        self.hints[parts[0]] = parts[1]

    def roots(self, h):
        # every stored root whose subject hashes to h, as DER bytes
        out = []
        if not self.dir or not h:
            return out
        for i in range(_MAX_PER_NAME):
            der = files.read(self.dir + "/" + h + (".der" if i == 0 else "." + str(i) + ".der"))
            if der is None:
                break
            out.append(der)
        return out

    def hint(self, origin):
        return self.hints.get(origin)

    def remember(self, origin, h):
        if self.hints.get(origin) == h:
            return
        if len(self.hints) >= _MAX_HINTS:
            self.hints.pop(next(iter(self.hints)))
        self.hints[origin] = h
        if self._hint_file:
            lines = []
            for k in self.hints:
                lines.append(k + " " + self.hints[k])
            try:
                files.write_atomic(self._hint_file, "\n".join(lines).encode())
            except OSError:
                pass
