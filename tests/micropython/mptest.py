# A minimal test runner for scripts that run under real MicroPython (see run.mjs).
# Each test prints "PASS name" or "FAIL name: error"; run() ends with "N passed, N failed"
# and exits 1 if anything failed, so the pytest wrapper can check every test by name.
import sys

_tests = []


def test(fn, name=None):
    _tests.append((name or fn.__name__, fn))
    return fn


def raises(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%s did not raise %s" % (fn.__name__, exc_type.__name__))


def run():
    passed = failed = 0
    for name, fn in _tests:
        try:
            fn()
        except Exception as exc:  # report every failure and go on
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(exc).__name__, exc))
            sys.print_exception(exc)
        else:
            passed += 1
            print("PASS %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    if failed:
        sys.exit(1)
