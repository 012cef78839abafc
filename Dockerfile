# certification-service: the release binaries on distroless (glibc, no shell, non-root).
#   docker build -t certification-service:0.1.0 .
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
# Dependencies first, in their own layer, reused until the skeleton changes. Only the two
# binaries the image ships are built, here and below. Cargo's registry and target directory are
# cache mounts, so when the skeleton does change only what changed is compiled again. As that
# target directory outlives this build and may serve another at the same time, each step holds a
# lock on it, touches its own sources (placeholders here, the real ones below; COPY keeps older
# mtimes) so cargo rebuilds every workspace crate from them, and takes the binaries out to /out
# before letting go.
COPY --from=skeleton /skeleton/ ./
RUN --mount=type=cache,id=certification-service-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=certification-service-target,target=/src/target \
    flock target/.image-build.lock sh -c ' \
      find . -path ./target -prune -o -type f -name "*.rs" -exec touch {} + \
      && cargo build --release --locked -p certification-service \
           --bin certification-service --bin portone-sandbox'
COPY . .
RUN --mount=type=cache,id=certification-service-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=certification-service-target,target=/src/target \
    flock target/.image-build.lock sh -c ' \
      find . -path ./target -prune -o -type f -name "*.rs" -exec touch {} + \
      && cargo build --release --locked -p certification-service \
           --bin certification-service --bin portone-sandbox \
      && mkdir -p /out \
      && cp target/release/certification-service target/release/portone-sandbox /out/'

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/certification-service /usr/local/bin/certification-service
COPY --from=build /out/portone-sandbox /usr/local/bin/portone-sandbox
# distroless's nonroot user, by number so Kubernetes can verify runAsNonRoot.
USER 65532:65532
ENV GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
# gRPC, metrics, and the plain health port used when gRPC needs mTLS.
EXPOSE 50051 9090 50052
ENTRYPOINT ["/usr/local/bin/certification-service"]
CMD ["serve"]
