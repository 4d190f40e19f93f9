# Trust store edits from a paired app (trust.add, trust.remove, trust.list). Roots from the
# image and roots an app added share one directory, named as kh/http/trust.py reads them
# (<h>.der, <h>.1.der, ... with no gaps); the ids an app added are listed in <data>/trust-added
# so that a factory reset removes exactly those.
import os

from micropython import const

from kh.http import der as _der
from kh.http import trust as _trust
from kh.store import files

_MAX_PER_NAME = const(8)
_MAX_CERT = const(4096)
_HEX = "0123456789abcdef"


def _valid_id(i):
    h, _, n = i.partition(".")
    if len(h) != 16 or any(c not in _HEX for c in h):
        return False
    return n == "" or (n.isdigit() and 0 < int(n) < _MAX_PER_NAME)


class TrustEditor:
    def __init__(self, trust_dir, data_root):
        self.dir = trust_dir
        self._added_path = data_root + "/trust-added"

    def _file(self, h, i):
        return self.dir + "/" + h + (".der" if i == 0 else "." + str(i) + ".der")

    def _added(self):
        raw = files.read(self._added_path)
        return [x for x in raw.decode().split("\n") if x] if raw else []

    def _set_added(self, ids):
        files.write_atomic(self._added_path, "\n".join(ids).encode())

    def add(self, cert):
        # -> the new root's id; ValueError when it is not a CA certificate in DER
        if not 0 < len(cert) <= _MAX_CERT:
            raise ValueError("a certificate of %d bytes" % len(cert))
        try:
            subject = bytes(_der.names(cert)[1])
        except (ValueError, IndexError):
            raise ValueError("not an X.509 certificate")
        if not _der.is_ca(cert):
            raise ValueError("not a CA certificate (basicConstraints cA is not set)")
        why = _der.usable(cert)
        if why:
            raise ValueError("the TLS library cannot use this certificate (mbedTLS: %s); a root "
                             "with an RSA-PSS signature or critical name constraints cannot "
                             "anchor a chain here" % why)
        h = _trust.name_hash(subject)
        files.makedirs(self.dir)
        for i in range(_MAX_PER_NAME):
            old = files.read(self._file(h, i))
            rid = h if i == 0 else "%s.%d" % (h, i)
            if old == cert:
                return rid
            if old is None:
                files.write_atomic(self._file(h, i), cert)
                added = self._added()
                added.append(rid)
                self._set_added(added)
                return rid
        raise ValueError("too many roots with this subject")

    def remove(self, rid):
        if not isinstance(rid, str) or not _valid_id(rid):
            return False
        h, _, n = rid.partition(".")
        i = int(n) if n else 0
        if not files.exists(self._file(h, i)):
            return False
        last = i
        while last + 1 < _MAX_PER_NAME and files.exists(self._file(h, last + 1)):
            last += 1
        if last != i:
            # keep the numbering gap-free: the last root of this name takes the freed slot
            os.rename(self._file(h, last), self._file(h, i))
        else:
            files.remove(self._file(h, i))
        added = [a for a in self._added() if a != rid]
        moved = h if last == 0 else "%s.%d" % (h, last)
        if last != i and moved in added:
            added[added.index(moved)] = rid
        self._set_added(added)
        return True

    def list(self):
        added = self._added()
        out = []
        try:
            entries = sorted(e[0] for e in os.ilistdir(self.dir))
        except OSError:
            return out
        for name in entries:
            if name.endswith(".der"):
                rid = name[:-4]
                out.append({"id": rid, "added": rid in added})
        return out

    def clear_added(self):
        for rid in reversed(self._added()):
            self.remove(rid)
        files.remove(self._added_path)
