# Rules store: the webhooks this device fires, and the device events that fire them.
#
# A rule is one webhook object of docs/rule-format.md, keyed by its functionName,
# with one more top-level key, "events": the events that fire it (default ["trigger"]):
#   "trigger"            the paired app's `trigger` command may fire it by name
#   "button:<name>"      a press of the named button          (name: 1-16 of A-Za-z0-9_-)
#   "finger:<user>"      any recognised finger of that user   (user: 1-32 of A-Za-z0-9_-)
#   "finger:<user>:<n>"  finger n (0-99) of that user
# (the grammar of host/keyhook/rules/__init__.py). A device event is "button:<name>" or
# "finger:<user>:<n>"; names_for(event) gives the rules it fires, in the order they are stored.
#
# File <root>/rules.jsonl: two lines per rule, a small header, then the rule as JSON:
#   {"n": functionName, "e": [events], "l": level, "h": host, "a": auth type, "i": id, "s": size}
#   {rule}
# where "s" is the byte length of the rule line (with its newline); json.dumps escapes control
# characters, so no line holds a raw newline. Lookups read headers and seek past rule lines;
# get() reads one rule line; a change streams the file into rules.jsonl.tmp with the change
# applied (unchanged rule lines are copied in 512-byte chunks through one buffer), then renames
# it over the old file. littlefs renames atomically: after a power cut the store holds exactly
# the old set or the new one. At most one rule is in RAM at a time, and only when it is read.
# A change needs free flash for a whole copy of the rules file; when there is none, the change
# is refused (no_space) and the rules stay as they were.
# Every rule of a put is validated (kh/store/schema.py) before anything is written; a refused
# put changes nothing.
import io
import json
import os
from micropython import const

from kh import store
from kh.store import files
from kh.store.errors import StoreError

MAX_RULES = const(32)
_CHUNK = const(512)
_EIO = const(5)
_ENOSPC = const(28)
_FILE = "rules.jsonl"
_STAGE = "rules.stage" + files.TMP


def _path():
    return store.path(_FILE)


# ---- reading ----

_buf = None  # one copy buffer for the life of the module


def _chunk():
    global _buf
    if _buf is None:
        _buf = memoryview(bytearray(_CHUNK))
    return _buf


def _entries():
    # Yields (header, raw header line, file, offset of the rule line) for every stored rule.
    # The consumer may seek and read the rule line (header["s"] bytes); iteration seeks past it.
    try:
        f = open(_path(), "rb")
    except OSError:
        return
    try:
        pos = 0
        while True:
            f.seek(pos)
            raw = f.readline()
            if not raw:
                break
            try:
                head = json.loads(raw)
            except ValueError:
                head = None
            if (not isinstance(head, dict) or not isinstance(head.get("n"), str)
                    or not isinstance(head.get("e"), list) or not isinstance(head.get("s"), int)):
                break  # cannot happen after atomic writes; nothing past it can be trusted
            start = pos + len(raw)
            yield head, raw, f, start
            pos = start + head["s"]
    finally:
        f.close()


def _heads():
    for head, _, _, _ in _entries():
        yield head


def _read_rule(f, start, size):
    f.seek(start)
    return json.loads(f.read(size))


def _copy(f, start, size, out):
    # Copies size bytes from f at start to out through the one buffer.
    buf = _chunk()
    f.seek(start)
    while size > 0:
        n = f.readinto(buf[:min(size, _CHUNK)])
        if not n:
            raise OSError(_EIO)  # the file ended early: never copy a partial rule
        out.write(buf[:n])
        size -= n


def meta(head):
    # What `list` shows: no URL path, query, header, body or token.
    m = {"name": head["n"], "level": head["l"], "host": head["h"], "auth": head["a"], "events": head["e"]}
    if "i" in head:
        m["id"] = head["i"]
    return m


def list_meta(start=0, limit=MAX_RULES):
    out = []
    k = 0
    for head in _heads():
        if k >= start and len(out) < limit:
            out.append(meta(head))
        k += 1
    return out


def count():
    n = 0
    for _ in _heads():
        n += 1
    return n


def get(name):
    it = _entries()
    try:
        for head, _, f, start in it:
            if head["n"] == name:
                return _read_rule(f, start, head["s"])
    finally:
        it.close()  # closes the file now, not at the next garbage collection
    return None


def definitions(auth=None):
    # Each stored rule's definition in one pass, one in RAM at a time; with `auth`, only the
    # rules of that authentication type (the headers say which: the others are not parsed).
    for head, _, f, start in _entries():
        if auth is None or head["a"] == auth:
            yield _read_rule(f, start, head["s"]).get("definition")


def _head(name):
    it = _entries()
    try:
        for head, _, _, _ in it:
            if head["n"] == name:
                return head
    finally:
        it.close()
    return None


def names():
    return [head["n"] for head in _heads()]


def owner(name):
    # The app_id that stored the rule ("" for a rule stored without one), or None: no such rule.
    head = _head(name)
    return None if head is None else head.get("o", "")


def _matches(pattern, event):
    if pattern == event:
        return True
    # "finger:<user>" covers every finger of that user: "finger:<user>:<n>".
    return (pattern.startswith("finger:") and event.startswith(pattern)
            and event[len(pattern):len(pattern) + 1] == ":" and pattern.count(":") == 1)


def names_for(event):
    # Names of the rules that `event` fires, in stored order.
    out = []
    for head in _heads():
        for p in head["e"]:
            if _matches(p, event):
                out.append(head["n"])
                break
    return out


def triggerable(name):
    head = _head(name)
    return head is not None and "trigger" in head["e"]


# ---- changing ----

try:
    class _Count(io.IOBase):
        # A stream that only counts the bytes written to it.
        def __init__(self):
            self.n = 0

        def write(self, b):
            self.n += len(b)
            return len(b)
except AttributeError:  # a build without io.IOBase
    _Count = None


def _size(rule):
    # Bytes of the rule's JSON. Serialised into a counter where the build allows, so that the
    # rule never has to be one contiguous string in RAM; else measured on a string.
    if _Count is None:
        return len(memoryview(json.dumps(rule)))
    c = _Count()
    json.dump(rule, c)
    return c.n


rule_size = _size  # for kh.store.schema


def _write_rule(out, head, rule):
    head["s"] = _size(rule) + 1
    json.dump(head, out)
    out.write(b"\n")
    json.dump(rule, out)
    out.write(b"\n")


def _check(rules, seen):
    # Validate a list of rules (names must be new to `seen`); fill in the defaults that are
    # stored (events, securityLevel). Returns their headers. Nothing is written.
    if isinstance(rules, dict):
        rules = [rules]
    if not isinstance(rules, list) or not rules:
        raise StoreError("invalid_rule", "give one rule (an object) or a non-empty list of rules")
    if len(rules) + len(seen) > MAX_RULES:
        raise StoreError("too_many", "the device holds at most %d rules; this put has %d"
                         % (MAX_RULES, len(rules) + len(seen)))
    from kh.store.schema import validate  # loaded at the first put: lookups do not need it
    heads = []
    for r in rules:
        h = validate(r)
        if h["n"] in seen:
            raise StoreError("invalid_rule", "rule %s appears twice; functionName must be unique"
                             % json.dumps(h["n"]))
        seen.add(h["n"])
        heads.append(h)
    for i in range(len(rules)):
        r = rules[i]
        if "events" not in r:
            r["events"] = heads[i]["e"]
        if "securityLevel" not in r["definition"]:
            r["definition"]["securityLevel"] = heads[i]["l"]
    return rules, heads


class _InRam:
    # New rules of one put, held in RAM.
    def __init__(self, rules, heads):
        self.rules = rules
        self.heads = heads
        self.names = [h["n"] for h in heads]

    def write(self, out, i):
        _write_rule(out, self.heads[i], self.rules[i])


def _rewrite(new, drop):
    # Copy the store into the temp file with the change applied, then rename it over the store.
    # new: the rules to put (.names, .write(out, i)), or None; drop: names to delete. Returns
    # the number of stored rules replaced or deleted.
    path = _path()
    tmp = path + files.TMP
    names = new.names if new else ()
    by_name = {}
    for i in range(len(names)):
        by_name[names[i]] = i
    done = bytearray(len(names))
    matched = 0
    found = set()
    n = 0
    it = _entries()
    try:
        with open(tmp, "wb") as out:
            for head, raw, f, start in it:
                name = head["n"]
                i = by_name.get(name)
                if i is not None:
                    if not done[i]:
                        new.write(out, i)
                        done[i] = 1
                        n += 1
                    matched += 1
                elif name in drop:
                    found.add(name)
                    matched += 1
                else:
                    out.write(raw)
                    _copy(f, start, head["s"], out)
                    n += 1
            for i in range(len(names)):
                if not done[i]:
                    new.write(out, i)
                    n += 1
            if n > MAX_RULES:
                raise StoreError("too_many", "the device holds at most %d rules; this change would "
                                 "make %d; delete some first" % (MAX_RULES, n))
            for name in drop:
                if name not in found:
                    raise StoreError("not_found", "no rule named %s; `keyhook rules list` shows "
                                     "the stored ones" % json.dumps(name))
        os.rename(tmp, path)
    except StoreError:
        files.remove(tmp)
        raise
    except OSError as e:
        files.remove(tmp)  # without power this fails too; store.use() clears it at the next boot
        if e.args and e.args[0] == _ENOSPC:
            raise StoreError("no_space", "the flash is full; delete some rules or shorten them")
        raise
    finally:
        it.close()  # the rules file, now rather than at a garbage collection
    return matched


def _own(heads, app_id):
    if app_id:
        for h in heads:
            h["o"] = app_id


def put(rules, app_id=None):
    # Store one rule (a dict) or many (a list), all or none; a rule whose functionName is stored
    # already is replaced in place, new ones are appended. Returns the names, in the order given.
    # The defaults that get stored (events, securityLevel) are filled into the given dicts.
    # app_id: the app that owns them (kept in the header as "o"; owner(name) gives it).
    try:
        rules, heads = _check(rules, set())
    finally:
        _unload_schema()
    _own(heads, app_id)
    new = _InRam(rules, heads)
    _rewrite(new, ())
    return new.names


def _unload_schema():
    # the validator is needed during a put only (a staged put keeps it until commit or abort)
    import kh

    kh.unload("kh.store.schema")


class Stage:
    # A put that arrives in parts (a push larger than one message): each part is validated and
    # appended to rules.stage.tmp, and only commit() changes the store, all at once, like one
    # put. abort(), a refused part, or a reboot (store.use() removes *.tmp files) leaves the
    # store as it was. RAM holds the staged names and offsets, not the rules.
    #   st = rules.Stage(); st.add(part1); st.add(part2); st.commit()
    def __init__(self, app_id=None):
        self._app = app_id
        self._path = store.path(_STAGE)
        self._f = open(self._path, "wb")
        self._seen = set()
        self.names = []
        self._spans = []  # (offset, length) of each staged line

    def add(self, rules):
        if self._f is None:
            raise StoreError("invalid_rule", "this staged put is finished; start a new one")
        try:
            rules, heads = _check(rules, self._seen)
        except StoreError:
            self.abort()
            raise
        _own(heads, self._app)
        try:
            for i in range(len(rules)):
                start = self._f.tell()
                _write_rule(self._f, heads[i], rules[i])
                self._spans.append((start, self._f.tell() - start))
                self.names.append(heads[i]["n"])
        except OSError as e:
            self.abort()
            if e.args and e.args[0] == _ENOSPC:
                raise StoreError("no_space", "the flash is full; delete some rules or shorten them")
            raise
        return len(self.names)

    def write(self, out, i):
        off, size = self._spans[i]
        _copy(self._r, off, size, out)

    def commit(self):
        if self._f is None:
            raise StoreError("invalid_rule", "this staged put is finished; start a new one")
        if not self.names:
            self.abort()
            raise StoreError("invalid_rule", "nothing was staged; give at least one rule")
        self._f.close()
        self._f = None
        _unload_schema()
        self._r = open(self._path, "rb")
        try:
            _rewrite(self, ())
        finally:
            self._r.close()
            files.remove(self._path)
        return self.names

    def abort(self):
        _unload_schema()
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        files.remove(self._path)


def delete(names):
    # Delete one rule (a name) or many (a list of names), all or none: an unknown name changes
    # nothing and raises not_found.
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise StoreError("invalid_rule", "give a functionName or a list of them")
    for n in names:
        if not isinstance(n, str):
            raise StoreError("invalid_rule", "a functionName must be a string")
    drop = set(names)
    _rewrite(None, drop)
    return len(drop)


def clear():
    # Delete every rule (one atomic remove).
    files.remove(_path())
    files.remove(_path() + files.TMP)
    files.remove(store.path(_STAGE))
