# ruff: noqa: UP031  (runs under any python3 >= 3.8 in the sandbox: %-formatting is deliberate)
# The program server: the only treedec code that runs inside the sandbox. Standard library only,
# Python 3.8+ syntax: it runs under whatever interpreter the sandbox has (the host's real python3,
# or a Docker image's), started as ``python3 -I -S -B -c <this file>``.
#
# It holds nothing worth stealing: no expected value, no test code, no verdict. It loads the
# program, then answers the judge's requests (length-prefixed marshal frames on fd 0) with plain
# values (one JSON line each on the reply fd):
#
#   {"t": "loaded", "ok": bool, ...}              the program compiled and (if asked) loaded
#   {"t": "v", "q": q, "v": value}                a call or expression returned this value
#   {"t": "x", "q": q, "s": status, "et", "em"}   it raised / timed out / returned a non-plain value
#   {"t": "n", "q": q, "f": [...], "v": {...}, "m": [...]}  the program's functions, values, modules
#   {"t": "o", "q": q, "s": status, "o": out, ...} a whole-program run on stdin, and its stdout
#
# The program runs in this same interpreter and can rewrite all of this, so the judge on the host
# treats every reply as untrusted data and decides every verdict itself.
#
# Deliberate copies: this file is sent as one text to any python3 >= 3.8, in a sandbox that hides
# treedec and site-packages, and starts lean, so it imports no treedec module (nor json or struct).
# The few helpers it shares with the judge and the wire format are copied here; each copy says
# which original it follows, and a change to one needs the same change to the other.
import io
import marshal
import os
import resource
import sys
import time

# Deliberate copy (no treedec imports here) of the _signal import of sandbox/judge.py.
try:  # _signal, not signal: signal imports enum, functools and collections (milliseconds per start)
    import _signal as signal
except ImportError:  # pragma: no cover - an interpreter without the C module
    import signal

_ModuleType = type(sys)  # types.ModuleType, without importing types

_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_Base = BaseException
_type = type
_perf = time.perf_counter


class _Timeout(BaseException):
    pass


class _NotPlain(Exception):
    pass


# Deliberate copy (no treedec imports here) of json's encode_basestring_ascii (wire.py's _quote).
def _jstr(x):
    if x.isascii() and x.isprintable() and '"' not in x and "\\" not in x:
        return '"' + x + '"'
    out = []
    for ch in x:
        o = ord(ch)
        if ch in _ESC:
            out.append(_ESC[ch])
        elif 32 <= o < 127:
            out.append(ch)
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
    return '"' + "".join(out) + '"'


# Deliberate copy (no treedec imports here) of sandbox/wire.py's dumps_plain.
def _dumps(x):
    """A minimal JSON encoder for the server's own frames (json would import re, enum, ...)."""
    t = _type(x)
    if t is str:
        return _jstr(x)
    if x is None:
        return "null"
    if t is bool:
        return "true" if x else "false"
    if t is int:
        return str(x)
    if t is list:
        return "[" + ",".join([_dumps(v) for v in x]) + "]"
    if t is dict:
        return "{" + ",".join([_jstr(k) + ":" + _dumps(v) for k, v in x.items()]) + "}"
    raise _NotPlain("frame")


_BASES = (bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set, frozenset)


# Deliberate mirror (no treedec imports here) of sandbox/wire.py's decode_value: its inverse.
def _encode(x, depth=0):
    """Tagged JSON of a plain value (see sandbox/wire.py); _NotPlain for anything else."""
    if depth > 60:
        raise _NotPlain("a value nested more than 60 deep")
    t = _type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -(1 << 62) < x < (1 << 62) else ["I", hex(x)]
    if t is float:
        return ["F", x.hex()]
    if t is list:
        return ["L"] + [_encode(v, depth + 1) for v in x]
    if t is tuple:
        return ["T"] + [_encode(v, depth + 1) for v in x]
    if t is set or t is frozenset:
        return ["S" if t is set else "Z"] + [_encode(v, depth + 1) for v in x]
    if t is dict:
        return ["D"] + [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in x.items()]
    if t is bytes or t is bytearray:
        return ["B", x.hex()]
    if t is complex:
        return ["C", x.real.hex(), x.imag.hex()]
    if t is range:
        return ["R", x.start, x.stop, x.step]
    for base in _BASES:  # subclasses (namedtuple, IntEnum, ...) travel as their base type's value
        if isinstance(x, base):
            return _encode(base(x), depth)
    raise _NotPlain("a " + _name_of(t))


def _name_of(t):
    name = getattr(t, "__name__", None)
    return name if _type(name) is str else "object"


def _safe_text(x, limit=2000):
    t = _type(x)
    if t is str:
        return x[:limit]
    if t in (int, float, bool, bytes, type(None)):
        return repr(x)[:limit]
    return "<" + _name_of(t) + ">"


def _exc_info(e):
    args = e.args if isinstance(e.args, tuple) else ()
    if len(args) == 1:
        msg = _safe_text(args[0])
    else:
        msg = ", ".join(_safe_text(a, 400) for a in args[:5])
    return _name_of(_type(e)), msg


# Deliberate copy (no treedec imports here) of sandbox/judge_link.py's _read_exact.
def _read_exact(fd, n):
    chunks = []
    while n > 0:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError()
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


# Deliberate mirror (no treedec imports here) of sandbox/framing.py's frame_request: reads its frames.
def _read_frame(fd):
    n = int.from_bytes(_read_exact(fd, 4), "big")
    return marshal.loads(_read_exact(fd, n))


# Deliberate copy (no treedec imports here) of sandbox/judge_link.py's _set_limits (with the program's caps).
def _set_limits(lim, single_process, nproc_extra):
    R = resource

    def cap(which, value):
        try:
            soft, hard = R.getrlimit(which)
            if hard != R.RLIM_INFINITY:
                value = min(value, hard)
            R.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    cap(R.RLIMIT_CORE, 0)
    cap(R.RLIMIT_FSIZE, max(lim["file_bytes"], lim["output_bytes"]))
    cap(R.RLIMIT_NOFILE, lim["open_files"])
    cap(R.RLIMIT_AS, lim["memory_bytes"])
    try:
        R.setrlimit(R.RLIMIT_CPU, (lim["cpu_seconds"], lim["cpu_seconds"] + 1))
    except (ValueError, OSError):
        pass
    # one process: the address-space limit then bounds the whole execution
    cap(R.RLIMIT_NPROC, 1 if single_process else lim["processes"] + nproc_extra)


# Deliberate copy (no treedec imports here) of the uid drop in sandbox/judge_link.py's main.
def _drop_privileges(uid, gid):
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _high_fd(fd, salt):
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    top = 1024 if soft == resource.RLIM_INFINITY or soft < 0 else min(soft, 4096)
    high = max(top - 1 - (os.getpid() * 7919 + salt) % max(top // 2, 1), 16)
    os.dup2(fd, high)
    os.close(fd)
    os.set_inheritable(high, False)
    return high


class _Server:
    def __init__(self, request, reply_fd, out_fd):
        self.reply_fd = reply_fd
        self.out_fd = out_fd
        self.limits = request["limits"]
        self.out_cap = int(self.limits["output_bytes"])
        self.max_reply = int(request.get("max_reply") or (1 << 20))
        self.entry = request.get("entry_point")
        self.ns = {}
        self.code = None
        self.std_streams = (sys.stdout, sys.stderr, sys.stdin)

    def send(self, obj):
        data = (_dumps(obj) + "\n").encode("utf-8", "surrogatepass")
        while data:
            data = data[os.write(self.reply_fd, data) :]

    def timed(self, budget, fn, *args):
        signal.setitimer(signal.ITIMER_REAL, max(float(budget), 0.001))
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def failure(self, e):
        """(status, exception type, message) of an exception out of program code."""
        if isinstance(e, _Timeout):
            return "timeout", "Timeout", "the test ran out of time"
        if isinstance(e, MemoryError):
            return "memory", "MemoryError", "memory limit"
        et, em = _exc_info(e)
        return "error", et, em

    def load(self, program, budget, run):
        try:
            self.code = compile(program, "<program>", "exec", dont_inherit=True)
        except _Base as e:
            et, em = _exc_info(e)
            return {"t": "loaded", "ok": False, "compile_error": True, "et": et, "em": em}
        if not run:
            return {"t": "loaded", "ok": True}
        main_mod = _ModuleType("__main__")
        self.ns = main_mod.__dict__
        sys.modules["__main__"] = main_mod
        try:
            try:
                self.timed(budget, exec, self.code, self.ns)
            finally:
                sys.stdout, sys.stderr, sys.stdin = self.std_streams
        except _Base as e:
            status, et, em = self.failure(e)
            return {"t": "loaded", "ok": False, "s": status, "et": et, "em": em}
        return {"t": "loaded", "ok": True}

    def value_reply(self, q, value):
        try:
            text = _dumps({"t": "v", "q": q, "v": _encode(value)})
        except _NotPlain as e:
            return {
                "t": "x",
                "q": q,
                "s": "unencodable",
                "et": "NotPlainValue",
                "em": "the program returned %s, not a plain value" % _safe_text(e.args[0], 200),
            }
        except RecursionError:
            return {
                "t": "x",
                "q": q,
                "s": "unencodable",
                "et": "NotPlainValue",
                "em": "the returned value is nested too deep",
            }
        if len(text) > self.max_reply:
            return {
                "t": "x",
                "q": q,
                "s": "unencodable",
                "et": "NotPlainValue",
                "em": "the returned value is larger than %d bytes encoded" % self.max_reply,
            }
        return text

    def call(self, req):
        name = req["name"]
        fn = self.ns.get(name)
        if fn is None:
            if name == self.entry:
                raise NameError("the program does not define the entry point %r" % name)
            raise NameError("name %r is not defined by the program" % name)
        return fn(*req["args"], **req["kwargs"])

    def evaluate(self, req):
        return eval(compile(req["expr"], "<test>", "eval", dont_inherit=True), self.ns)

    def names(self, q, wanted):
        funcs, values, modules = [], {}, []
        for name in wanted:
            if name not in self.ns:
                continue
            x = self.ns[name]
            if isinstance(x, _ModuleType):
                modules.append(name)
            elif callable(x):
                funcs.append(name)
            else:
                try:
                    values[name] = _encode(x)
                except (_NotPlain, RecursionError):
                    pass
        return {"t": "n", "q": q, "f": funcs, "v": values, "m": modules}

    def run_io(self, q, stdin, budget):
        data = stdin.encode("utf-8", "surrogateescape")
        fin = os.memfd_create("stdin")
        os.write(fin, data)
        os.lseek(fin, 0, 0)
        fout = os.memfd_create("stdout")
        os.dup2(fin, 0)
        os.dup2(fout, 1)
        os.close(fin)
        sys.stdin = io.TextIOWrapper(
            io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="surrogateescape"
        )
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
            encoding="utf-8",
            errors="surrogateescape",
            write_through=False,
        )
        reply = {"t": "o", "q": q, "s": "ok"}
        try:
            try:
                io_mod = _ModuleType("__main__")
                sys.modules["__main__"] = io_mod
                try:
                    self.timed(budget, exec, self.code, io_mod.__dict__)
                except SystemExit as e:
                    if e.code not in (None, 0):
                        raise
                finally:
                    try:
                        sys.stdout.flush()
                    except _Base:
                        pass
            except _Base as e:
                reply["s"], reply["et"], reply["em"] = self.failure(e)
        finally:
            os.dup2(self.out_fd, 1)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            sys.stdout, sys.stderr, sys.stdin = self.std_streams
            size = os.lseek(fout, 0, 2)
            os.lseek(fout, 0, 0)
            raw = os.read(fout, min(size, self.out_cap + 1)) if size else b""
            os.close(fout)
        reply["o"] = raw[: self.out_cap].decode("utf-8", "replace")
        reply["ot"] = size > self.out_cap
        return reply

    def answer(self, req):
        op, q = req.get("op"), req.get("q")
        if op == "names":
            return self.names(q, req["names"])
        if op == "io":
            return self.run_io(q, req["stdin"], req["budget"])
        try:
            try:
                fn = self.call if op == "call" else self.evaluate
                value = self.timed(req["budget"], fn, req)
            finally:
                sys.stdout, sys.stderr, sys.stdin = self.std_streams
        except _Base as e:
            status, et, em = self.failure(e)
            return {"t": "x", "q": q, "s": status, "et": et, "em": em}
        return self.value_reply(q, value)

    def serve(self, request_fd):
        while True:
            try:
                req = _read_frame(request_fd)
            except EOFError:
                return
            try:
                reply = self.answer(req)
            except _Timeout:
                reply = {
                    "t": "x",
                    "q": req.get("q"),
                    "s": "timeout",
                    "et": "Timeout",
                    "em": "the test ran out of time",
                }
            if _type(reply) is str:
                data = (reply + "\n").encode("utf-8", "surrogatepass")
                while data:
                    data = data[os.write(self.reply_fd, data) :]
            else:
                self.send(reply)


def _on_alarm(signum, frame):
    raise _Timeout()


FIRST_FRAME_WAIT = 120  # seconds a (pre-started, blank) server waits for its request, then exits


def _main():
    signal.alarm(FIRST_FRAME_WAIT)  # SIGALRM's default action ends an idle spare
    request = _read_frame(0)
    signal.alarm(0)
    request_fd = _high_fd(os.dup(0), 1)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    if request.get("reply_fd") is None:  # stdio mode (Docker): replies on fd 1, program output on fd 2
        reply = os.dup(1)
        os.dup2(2, 1)
    else:
        reply = request["reply_fd"]
    reply = _high_fd(reply, 2)
    os.close(null)
    out_fd = os.dup(1)
    os.set_inheritable(out_fd, False)
    _drop_privileges(request.get("uid"), request.get("gid"))
    if request.get("workdir"):
        os.chdir(request["workdir"])
    os.environ.clear()
    os.environ.update(request.get("env") or {})
    lim = request["limits"]
    _set_limits(lim, bool(request.get("single_process")), int(request.get("nproc_extra") or 0))
    signal.signal(signal.SIGALRM, _on_alarm)
    server = _Server(request, reply, out_fd)
    loaded = server.load(request["program"], float(lim["wall_per_test"]), bool(request.get("load")))
    server.send(loaded)
    if loaded.get("ok"):
        server.serve(request_fd)


try:
    _main()
except BaseException as e:
    try:
        tb, where = e.__traceback__, []
        while tb is not None:
            where.append("%s:%d" % (tb.tb_frame.f_code.co_name, tb.tb_lineno))
            tb = tb.tb_next
        os.write(2, ("treedec program server failure: %r at %s\n" % (e, " > ".join(where))).encode())
    finally:
        os._exit(70)
os._exit(0)
