# certification-service on distroless (glibc, no shell, non-root). Two images:
#   docker build -t certification-service:0.2.0 .
#     the runtime (the last stage): built without the `sandbox` feature, so the binary carries no
#     PortOne sandbox at all (`serve --sandbox` is refused) and no portone-sandbox binary ships;
#   docker build --target sandbox -t certification-service-sandbox:0.2.0 .
#     for callers' test environments: `serve --sandbox`, gRPC on 50051 and the sandbox's PortOne
#     emulator with its fault-injection routes (/__sandbox/) on the fixed port 8900.
# The base images are build arguments, defaulting to the public ones; .ci/image.sh passes local
# stand-ins to build and run the image where no registry can be reached.
ARG BUILDER_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# The workspace reduced to its manifests and a placeholder for every target of every member
# (docker/cargo-skeleton.sh asks cargo for them). This stage runs again on any change, but what it
# writes changes only when a manifest, Cargo.lock or the set of targets does.
FROM ${BUILDER_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN sh docker/cargo-skeleton.sh /src /skeleton

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer, reused until the skeleton changes. Only the runtime's
# binary is built, here and below (the `sandbox` feature adds no dependency: the sandbox image's
# build reuses all of this). Cargo's registry and target directory are cache mounts, so when the
# skeleton does change only what changed is compiled again. As that target directory outlives
# this build and may serve another at the same time, each step holds a lock on it, touches its
# own sources (placeholders here, the real ones below; COPY keeps older mtimes) so cargo rebuilds
# every workspace crate from them, and takes the binary out to /out before letting go.
COPY --from=skeleton /skeleton/ ./
RUN --mount=type=cache,id=certification-service-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=certification-service-target,target=/src/target \
    flock target/.image-build.lock sh -c ' \
      find . -path ./target -prune -o -type f -name "*.rs" -exec touch {} + \
      && cargo build --release --locked -p certification-service --no-default-features \
           --bin certification-service'
COPY . .
RUN --mount=type=cache,id=certification-service-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=certification-service-target,target=/src/target \
    flock target/.image-build.lock sh -c ' \
      find . -path ./target -prune -o -type f -name "*.rs" -exec touch {} + \
      && cargo build --release --locked -p certification-service --no-default-features \
           --bin certification-service \
      && mkdir -p /out \
      && cp target/release/certification-service /out/'

# The same sources with the default features: the sandbox compiled in.
FROM build AS build-sandbox
RUN --mount=type=cache,id=certification-service-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=certification-service-target,target=/src/target \
    flock target/.image-build.lock sh -c ' \
      find . -path ./target -prune -o -type f -name "*.rs" -exec touch {} + \
      && cargo build --release --locked -p certification-service --bin certification-service \
      && mkdir -p /out-sandbox \
      && cp target/release/certification-service /out-sandbox/'

# Callers' test environments: never beside production (`serve --sandbox` refuses a PostgreSQL
# DATABASE_URL, REDIS_URL, PortOne secrets or keys of its own; docs/sandbox.md).
FROM ${RUNTIME_IMAGE} AS sandbox
COPY --from=build-sandbox /out-sandbox/certification-service /usr/local/bin/certification-service
USER 65532:65532
ENV GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    SANDBOX_LISTEN_ADDR=0.0.0.0:8900 \
    DATABASE_URL=sqlite:///tmp/certification-service.db?mode=rwc \
    LOG_FORMAT=json
# gRPC (CertificationService and Sandbox/Certify), metrics, the PortOne emulator and its faults.
EXPOSE 50051 9090 8900
ENTRYPOINT ["/usr/local/bin/certification-service"]
CMD ["serve", "--sandbox"]

# The runtime image: the last stage, what a plain `docker build` gives.
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/certification-service /usr/local/bin/certification-service
# distroless's nonroot user, by number so Kubernetes can verify runAsNonRoot.
USER 65532:65532
ENV GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
# gRPC, metrics, and the plain health port used when gRPC needs mTLS.
EXPOSE 50051 9090 50052
ENTRYPOINT ["/usr/local/bin/certification-service"]
CMD ["serve"]
