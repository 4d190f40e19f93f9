# Reading one HTTP/1.1 response from a Conn: status line, the headers that frame the body, and a
# body framed by Content-Length, chunked encoding or close. Only a bounded prefix of the body is
# kept (max_body); the rest is read and dropped through the connection's buffer.
from micropython import const
from kh.http.errors import FireError

_MAX_HEAD = const(65536)  # bytes of status line and headers; past it the answer is refused
_MAX_CHUNK_LINE = const(256)
_KEEP_FIRST = const(512)  # the first size of a kept body that grows (chunked or close-delimited)


class Response:
    def __init__(self):
        self.status = None
        self.version = None
        self.keep_alive = False
        self.length = None
        self.chunked = False
        self.body = b""
        self.body_len = 0
        self.truncated = False
        self.got_bytes = 0  # bytes of this response received (0: a resend is still safe)
        self.buf = None
        self.limit = 0


async def _line(c, r, dl, phase, limit):
    # one line without CRLF, as bytes; overlong lines are cut at limit (their rest dropped)
    out = b""
    while True:
        i = c.buf.find(b"\n", c.lo, c.hi)
        if i >= 0:
            part = c.mv[c.lo:i]
            r.got_bytes += i + 1 - c.lo
            c.lo = i + 1
            if len(out) < limit:
                out += bytes(part[:limit - len(out)])
            if out.endswith(b"\r"):
                out = out[:-1]
            return out
        if c.hi > c.lo:
            if len(out) < limit:
                out += bytes(c.mv[c.lo:min(c.hi, c.lo + limit - len(out))])
            r.got_bytes += c.hi - c.lo
            c.lo = c.hi
        n = await c.fill(dl, phase)
        if n == 0:
            if r.got_bytes == 0:
                raise FireError("closed", "the server closed the connection without answering")
            raise FireError("bad_response", "the response ended early")


async def read_head(c, r, dl_first, dl_body, method):
    # status line and headers; skips 1xx interim responses
    while True:
        line = await _line(c, r, dl_first, "waiting for the response", 512)
        dl_first = dl_body
        if not line:
            continue
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise FireError("bad_response", "the server's answer is not HTTP/1.x")
        r.status = int(parts[1])
        r.version = parts[0]
        r.keep_alive = parts[0] == b"HTTP/1.1"
        r.length = None
        r.chunked = False
        # only the headers that frame the body are kept; any number of others (70 Set-Cookie
        # lines, say) is read and skipped, up to _MAX_HEAD bytes in all
        start = r.got_bytes
        while True:
            h = await _line(c, r, dl_body, "reading the response headers", 512)
            if not h:
                break
            if r.got_bytes - start > _MAX_HEAD:
                raise FireError("bad_response", "the response headers are longer than 64 KiB")
            k = h.find(b":")
            if k <= 0:
                continue
            name = h[:k].strip().lower()
            val = h[k + 1:].strip().lower()
            if name == b"content-length":
                if not val.isdigit():
                    raise FireError("bad_response", "bad Content-Length")
                v = int(val)
                if r.length is not None and r.length != v:
                    raise FireError("bad_response", "conflicting Content-Length")
                r.length = v
            elif name == b"transfer-encoding":
                r.chunked = val.endswith(b"chunked")
            elif name == b"connection":
                if b"close" in val:
                    r.keep_alive = False
                elif b"keep-alive" in val:
                    r.keep_alive = True
        if 100 <= r.status < 200 and r.status != 101:
            continue
        if r.status == 101:
            r.keep_alive = False
        return


def _keep(r, mv, prefix, n):
    # account n body bytes sitting in mv; copy what fits into the kept buffer (r.buf), which
    # grows up to r.limit when the caller asked for more than the preallocated prefix
    buf = r.buf
    end = r.body_len + n
    if end > len(buf) and r.limit > len(buf):
        size = len(buf) * 2
        if size < end:
            size = end if end > _KEEP_FIRST else _KEEP_FIRST
        if size > r.limit:
            size = r.limit
        grown = bytearray(size)
        grown[:r.body_len] = memoryview(buf)[:r.body_len]
        r.buf = buf = grown
    room = len(buf) - r.body_len if r.body_len < len(buf) else 0
    if room > 0:
        k = n if n < room else room
        buf[r.body_len:r.body_len + k] = mv[:k]
    r.body_len = end
    r.got_bytes += n


async def _take(c, r, count, prefix, dl):
    # exactly count body bytes (count None: until close)
    while count is None or count > 0:
        if c.lo == c.hi:
            n = await c.fill(dl, "reading the body")
            if n == 0:
                if count is None:
                    return
                raise FireError("bad_response", "the body ended early")
        n = c.hi - c.lo
        if count is not None and n > count:
            n = count
        _keep(r, c.mv[c.lo:c.lo + n], prefix, n)
        c.lo += n
        if count is not None:
            count -= n


async def read_body(c, r, method, prefix, dl, limit=0):
    # prefix: a preallocated bytearray (empty on the device: a webhook's answer is counted, not
    # kept); r.body becomes the kept prefix as bytes. limit: keep up to this many bytes instead
    # (a token answer), in a buffer of the announced length, or grown as the body arrives
    r.buf = prefix
    r.limit = limit
    if limit > len(prefix) and r.length is not None and r.length > len(prefix):
        r.buf = bytearray(r.length if r.length < limit else limit)
    if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
        r.body = b""
        return
    if r.chunked:
        while True:
            line = await _line(c, r, dl, "reading the body", _MAX_CHUNK_LINE)
            k = line.find(b";")
            if k >= 0:
                line = line[:k]
            try:
                size = int(line.strip(), 16)
            except ValueError:
                raise FireError("bad_response", "bad chunk size")
            if size == 0:
                while await _line(c, r, dl, "reading the trailers", 512):
                    pass
                break
            await _take(c, r, size, prefix, dl)
            if await _line(c, r, dl, "reading the body", 8):
                raise FireError("bad_response", "bad chunk ending")
    elif r.length is not None:
        await _take(c, r, r.length, prefix, dl)
    else:
        r.keep_alive = False
        await _take(c, r, None, prefix, dl)
    buf = r.buf
    r.buf = None
    kept = r.body_len if r.body_len < len(buf) else len(buf)
    r.truncated = r.body_len > kept
    r.body = bytes(memoryview(buf)[:kept])
