# Fault injection for the engine tests: make one firmware function raise MemoryError.
#   fault = {"target": "kh.http.der:names", "nth": 1}  (module:attribute[.attribute])
# The n-th call raises MemoryError (a failed allocation at that point); the others run as usual.
def inject(fault):
    mod_name, _, path = fault["target"].partition(":")
    parts = path.split(".")
    owner = __import__(mod_name, None, None, [parts[0]])
    for name in parts[:-1]:
        owner = getattr(owner, name)
    orig = getattr(owner, parts[-1])
    count = [0]
    nth = fault.get("nth", 1)

    def wrapped(*args, **kw):
        count[0] += 1
        if count[0] == nth:
            raise MemoryError("injected")
        return orig(*args, **kw)

    setattr(owner, parts[-1], wrapped)
    return count
