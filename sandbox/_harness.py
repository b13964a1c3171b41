# The in-sandbox harness. Standard library only, Python 3.8+ syntax: it runs under whatever
# interpreter the sandbox has (the host's real python3, or a Docker image's). It is started as
# ``python3 -I -S -B -c <this file>``, reads one JSON request from fd 0 until EOF, and writes one
# JSON line per event to the reply fd:
#
#   {"t": "expected", "values": {...}}   expected values evaluated *before* the program runs
#   {"t": "loaded", "ok": bool, ...}     the program compiled and (for function tests) loaded
#   {"t": "r", "i": i, "n": nonce, ...}  one per test, in order
#   {"t": "done"}
#
# Everything below runs inside ``_main`` with a private copy of the builtins, so a program that
# patches ``builtins`` or this module cannot change how the harness itself behaves.
import builtins as _builtins_module

_HARNESS_SOURCE = r'''
import os, sys, marshal, time, signal, io, resource, types

_loads = marshal.loads
_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


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


def _dumps(x):
    """A minimal JSON encoder (json would import re, enum, ... on every start)."""
    t = type(x)
    if t is str:
        return _jstr(x)
    if x is None:
        return "null"
    if t is bool:
        return "true" if x else "false"
    if t is int:
        return str(x)
    if t is float:
        return repr(x) if x == x and x not in (float("inf"), float("-inf")) else '"nan"'
    if t is list or t is tuple:
        return "[" + ",".join([_dumps(v) for v in x]) + "]"
    if t is dict:
        return "{" + ",".join([_jstr(str(k)) + ":" + _dumps(v) for k, v in x.items()]) + "}"
    return _jstr(repr(x))
_write = os.write
_perf = time.perf_counter
_setitimer = signal.setitimer
_isinstance = isinstance
_type = type
_name_of = type.__dict__["__name__"].__get__
_BaseException = BaseException
_MemoryError = MemoryError
_AssertionError = AssertionError
_SystemExit = SystemExit
_RecursionError = RecursionError
_FunctionType = types.FunctionType

PLAIN = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset, range,
         bytearray)
CONTAINERS = (list, tuple, set, frozenset, dict)
GUARDED_DUNDERS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__",
                   "__abs__", "__sub__", "__rsub__", "__add__", "__radd__", "__float__", "__int__",
                   "__index__", "__round__", "__contains__", "__iter__", "__getattr__",
                   "__getattribute__", "__hash__", "__str__", "__repr__", "__format__")
STDLIB_PREFIXES = tuple(p for p in {sys.base_prefix, sys.base_exec_prefix} if p)


class _Timeout(_BaseException):
    pass


class _Forged(_BaseException):
    pass


def _read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _safe_text(x, limit=2000):
    t = _type(x)
    if t is str:
        return x[:limit]
    if t in (int, float, bool, bytes, type(None)):
        return repr(x)[:limit]
    return "<" + _name_of(t) + ">"


def _exc_info(e):
    args = e.args if _isinstance(e.args, tuple) else ()
    if len(args) == 1:
        msg = _safe_text(args[0])
    else:
        msg = ", ".join(_safe_text(a, 400) for a in args[:5])
    return _name_of(_type(e)), msg


def _suspicious_class(t):
    # A class outside the standard library that overrides comparison/arithmetic in Python code.
    for klass in t.__mro__:
        if klass in PLAIN or klass is object:
            continue
        d = klass.__dict__
        for name in GUARDED_DUNDERS:
            f = d.get(name)
            code = getattr(f, "__code__", None) if f is not None else None
            if code is not None and not code.co_filename.startswith(STDLIB_PREFIXES):
                return True
    return False


def _check_plain(value, budget=200000):
    """Raise _Forged if the value contains an object whose comparisons the program controls."""
    stack = [value]
    seen = 0
    while stack and seen < budget:
        x = stack.pop()
        seen += 1
        t = _type(x)
        if t in PLAIN:
            if t is dict:
                stack.extend(x.keys())
                stack.extend(x.values())
            elif t in CONTAINERS:
                stack.extend(x)
            continue
        if _type(t) is not type or _suspicious_class(t):
            raise _Forged("the function returned a %s, whose comparisons the program defines" % _name_of(t))
        if _isinstance(x, CONTAINERS):
            stack.extend(x.values() if _isinstance(x, dict) else x)


def _encode(x, depth=0):
    """Tagged JSON for a value: scalars as themselves, containers as [tag, ...]."""
    t = _type(x)
    if depth > 60:
        return ["O", "<nested too deep>"]
    if t is bool or x is None or t is str:
        return x
    if t is int:
        return x if -(1 << 62) < x < (1 << 62) else ["I", str(x)]
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
    # subclasses of plain types that do not override comparisons (namedtuple, IntEnum, ...)
    for base in (bool, int, float, str, tuple, list, dict, set, frozenset, bytes):
        if _isinstance(x, base) and not _suspicious_class(t):
            return _encode(base(x), depth)
    return ["O", _name_of(t)]


def _set_limits(lim, nproc_extra):
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
    # when the uid is shared with the user's other processes, the host counts them in nproc_extra
    cap(R.RLIMIT_NPROC, lim["processes"] + nproc_extra)


def _drop_privileges(uid, gid):
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def _main():
    request = _loads(_read_all(0))
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    if request.get("reply_fd") is None:  # stdio mode (Docker): replies on fd 1, program output on fd 2
        reply = os.dup(1)
        os.dup2(2, 1)
    else:
        reply = request["reply_fd"]
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    top = 1024 if soft == resource.RLIM_INFINITY or soft < 0 else min(soft, 4096)
    high = max(top - 1 - (os.getpid() * 7919) % max(top // 2, 1), 16)
    os.dup2(reply, high)
    os.close(reply)
    os.set_inheritable(high, False)
    os.close(null)
    reply = high
    out_fd = os.dup(1)
    os.set_inheritable(out_fd, False)

    def send(obj):
        data = (_dumps(obj) + "\n").encode()
        while data:
            data = data[_write(reply, data):]

    lim = request["limits"]
    _drop_privileges(request.get("uid"), request.get("gid"))
    if request.get("workdir"):
        os.chdir(request["workdir"])
    os.environ.clear()
    os.environ.update(request.get("env") or {})
    # expected values that are not literals: evaluated before any program code exists here
    pre = request.get("pre_eval") or {}
    if pre:
        values = {}
        for key, expr in pre.items():
            try:
                values[key] = {"v": _encode(eval(expr, {"__builtins__": dict(_clean_builtins)}))}
            except _BaseException as e:
                values[key] = {"e": list(_exc_info(e))}
        send({"t": "expected", "values": values})
    _set_limits(lim, int(request.get("nproc_extra") or 0))
    per_test = float(lim["wall_per_test"])
    out_cap = int(lim["output_bytes"])
    program = request["program"]
    tests = request["tests"]
    entry = request.get("entry_point")
    # modules tests commonly use, snapshotted so a program that patches them is undone per test
    import math, itertools, operator, cmath
    mods = [math, itertools, operator, cmath]
    for name in ("re", "string", "collections", "functools", "heapq", "copy", "statistics", "fractions"):
        if name in sys.modules:
            mods.append(sys.modules[name])
    snap = {m: dict(m.__dict__) for m in mods}
    builtins_mod = _builtins_module
    builtins_snapshot = dict(_clean_builtins)

    def restore():
        for m, d in snap.items():
            cur = m.__dict__
            if cur != d:
                for k in [k for k in cur if k not in d]:
                    try:
                        delattr(m, k)
                    except (AttributeError, TypeError):
                        pass
                for k, v in d.items():
                    if cur.get(k, restore) is not v:
                        try:
                            setattr(m, k, v)
                        except (AttributeError, TypeError):
                            pass
        bd = builtins_mod.__dict__
        for k in [k for k in bd if k not in builtins_snapshot]:
            del bd[k]
        for k, v in builtins_snapshot.items():
            if bd.get(k, restore) is not v:
                bd[k] = v
        sys.stdout, sys.stderr, sys.stdin = std_streams

    def on_alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, on_alarm)
    std_streams = (sys.stdout, sys.stderr, sys.stdin)
    t0 = _perf()
    try:
        code = compile(program, "<program>", "exec", dont_inherit=True)
    except _BaseException as e:
        et, em = _exc_info(e)
        send({"t": "loaded", "ok": False, "compile_error": True, "et": et, "em": em})
        send({"t": "done"})
        return
    need_ns = any(t["kind"] != "io" for t in tests)
    ns = None
    if need_ns:
        main_mod = types.ModuleType("__main__")
        ns = main_mod.__dict__
        ns["__builtins__"] = builtins_mod
        sys.modules["__main__"] = main_mod
        status = None
        try:
            _setitimer(signal.ITIMER_REAL, per_test)
            try:
                exec(code, ns)
            finally:
                _setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            status = ("timeout", "Timeout", "the program did not finish loading in %.1fs" % per_test)
        except _MemoryError:
            status = ("memory", "MemoryError", "memory limit while loading the program")
        except _BaseException as e:
            et, em = _exc_info(e)
            status = ("error", et, em)
        restore()
        if status is not None:
            send({"t": "loaded", "ok": False, "s": status[0], "et": status[1], "em": status[2],
                  "d": _perf() - t0})
            send({"t": "done"})
            return
    send({"t": "loaded", "ok": True, "d": _perf() - t0})

    target = ns.get(entry) if (ns is not None and entry) else None

    def guarded(*args, **kwargs):
        if target is None:
            raise NameError("the program does not define the entry point %r" % entry)
        result = target(*args, **kwargs)
        _check_plain(result)
        return result

    def test_namespace():
        tns = {}
        for k, v in ns.items():
            if k not in builtins_snapshot or k == "__name__":
                tns[k] = v
        tns["__builtins__"] = dict(builtins_snapshot)
        if entry:
            tns[entry] = guarded
            tns["candidate"] = guarded
        return tns

    def run_code_test(t):
        src = t["code"]
        tcode = compile(src, "<test>", "exec", dont_inherit=True)
        tns = test_namespace()
        exec(tcode, tns)
        if t.get("call_check"):
            check = tns.get("check")
            if callable(check) and _type(check) is _FunctionType and check.__code__.co_filename == "<test>":
                check(guarded)
            else:
                raise NameError("the test does not define check(candidate)")
        return {}

    def run_call_test(t):
        tns = test_namespace()
        value = eval(compile(t["call"], "<test>", "eval", dont_inherit=True), tns)
        return {"v": _encode(value)}

    def run_io_test(t):
        data = t.get("stdin", "").encode("utf-8", "surrogateescape")
        fin = os.memfd_create("stdin")
        os.write(fin, data)
        os.lseek(fin, 0, 0)
        fout = os.memfd_create("stdout")
        os.dup2(fin, 0)
        os.dup2(fout, 1)
        os.close(fin)
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8",
                                     errors="surrogateescape")
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                      errors="surrogateescape", write_through=False)
        extra = {}
        try:
            io_mod = types.ModuleType("__main__")
            io_mod.__dict__["__builtins__"] = builtins_mod
            sys.modules["__main__"] = io_mod
            try:
                exec(code, io_mod.__dict__)
            except _SystemExit as e:
                if e.code not in (None, 0):
                    raise
            finally:
                try:
                    sys.stdout.flush()
                except _BaseException:
                    pass
        finally:
            os.dup2(out_fd, 1)
            null2 = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null2, 0)
            os.close(null2)
            size = os.lseek(fout, 0, 2)
            os.lseek(fout, 0, 0)
            raw = os.read(fout, min(size, out_cap + 1)) if size else b""
            os.close(fout)
            extra["o"] = raw[:out_cap].decode("utf-8", "replace")
            extra["ot"] = size > out_cap
        return extra

    runners = {"code": run_code_test, "call": run_call_test, "io": run_io_test}
    for t in tests:
        i, nonce = t["i"], t["n"]
        reply_obj = {"t": "r", "i": i, "n": nonce}
        start = _perf()
        try:
            try:
                _setitimer(signal.ITIMER_REAL, per_test)
                try:
                    reply_obj.update(runners[t["kind"]](t))
                finally:
                    _setitimer(signal.ITIMER_REAL, 0)
                reply_obj["s"] = "ok" if t["kind"] != "code" else "passed"
            except _Timeout:
                reply_obj["s"] = "timeout"
                reply_obj["em"] = "the test ran longer than %.1fs" % per_test
            except _MemoryError:
                reply_obj["s"] = "memory"
                reply_obj["et"] = "MemoryError"
            except _Forged as e:
                reply_obj["s"] = "failed"
                reply_obj["et"] = "ForgedValue"
                reply_obj["em"] = _safe_text(e.args[0])
            except _BaseException as e:
                et, em = _exc_info(e)
                tb = e.__traceback__
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                in_test = tb is not None and tb.tb_frame.f_code.co_filename == "<test>"
                is_assert = _type(e) is _AssertionError
                reply_obj["s"] = "failed" if (is_assert and in_test) else "error"
                reply_obj["et"] = et
                reply_obj["em"] = em
                if _type(e) is _RecursionError:
                    reply_obj["s"] = "error"
        except _Timeout:
            reply_obj["s"] = "timeout"
        _setitimer(signal.ITIMER_REAL, 0)
        try:
            restore()
        except _BaseException:
            pass
        reply_obj["d"] = _perf() - start
        send(reply_obj)
    send({"t": "done"})


try:
    _main()
except BaseException as e:
    try:
        tb, where = e.__traceback__, []
        while tb is not None:
            where.append("%s:%d" % (tb.tb_frame.f_code.co_name, tb.tb_lineno))
            tb = tb.tb_next
        os.write(2, ("treedec harness failure: %r at %s\n" % (e, " > ".join(where))).encode())
    finally:
        os._exit(70)
os._exit(0)
'''

_clean_builtins = dict(_builtins_module.__dict__)
exec(
    compile(_HARNESS_SOURCE, "<harness>", "exec"),
    {
        "__builtins__": dict(_clean_builtins),
        "__name__": "_harness",
        "_builtins_module": _builtins_module,
        "_clean_builtins": _clean_builtins,
    },
)
