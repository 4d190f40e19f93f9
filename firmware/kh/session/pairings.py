# The pairings of a device: app_id -> pairing key and admin flag, in one JSON file replaced
# atomically (a power cut leaves the old or the new set). Every change is written before it
# takes effect in RAM, so a removed pairing is gone at once and for good.
import json
from binascii import hexlify, unhexlify

from kh.store import files


class Pairings:
    def __init__(self, path):
        self._path = path
        self._items = {}
        raw = files.read(path)
        if raw:
            try:
                data = json.loads(raw)
                for app_id, rec in data.items():
                    pk = unhexlify(rec["pk"])
                    if len(pk) != 32:
                        raise ValueError("pairing key length")
                    self._items[app_id] = (pk, bool(rec.get("admin")))
            except (ValueError, KeyError, TypeError, AttributeError):
                # a damaged file cannot be trusted: start unpaired (the setup code works again)
                self._items = {}

    def _save(self, items):
        out = {}
        for app_id, (pk, admin) in items.items():
            out[app_id] = {"pk": hexlify(pk).decode(), "admin": admin}
        files.write_atomic(self._path, json.dumps(out).encode(), True)
        self._items = items

    def __len__(self):
        return len(self._items)

    def ids(self):
        return sorted(self._items)

    def key(self, app_id):
        rec = self._items.get(app_id)
        return rec[0] if rec else None

    def is_admin(self, app_id):
        rec = self._items.get(app_id)
        return bool(rec and rec[1])

    def put(self, app_id, pk, admin):
        items = dict(self._items)
        items[app_id] = (bytes(pk), admin)
        self._save(items)

    def hand_over(self, old, new):
        # the admin flag moves from old to new in one write; False if new is not paired
        if new not in self._items or old not in self._items:
            return False
        items = dict(self._items)
        items[old] = (items[old][0], False)
        items[new] = (items[new][0], True)
        self._save(items)
        return True

    def remove(self, app_id):
        if app_id not in self._items:
            return False
        items = dict(self._items)
        del items[app_id]
        self._save(items)
        return True

    def clear(self):
        self._save({})
