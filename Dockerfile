# certification-service: the release binaries on distroless (glibc, no shell, non-root).
#   docker build -t certification-service:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY migrations/Cargo.toml migrations/Cargo.toml
RUN mkdir -p src/bin migrations/src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/portone-sandbox.rs \
    && echo 'fn main() {}' > benches/token_fleet.rs \
    && echo 'fn main() {}' > build.rs \
    && touch src/lib.rs migrations/src/lib.rs \
    && cargo build --release --locked --bins \
    && rm -rf src migrations/src benches build.rs
COPY . .
# The placeholders above are older than nothing: make sure the real sources are rebuilt.
RUN touch build.rs src/main.rs src/lib.rs migrations/src/lib.rs \
    && cargo build --release --locked --bins

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/certification-service /usr/local/bin/certification-service
COPY --from=build /src/target/release/portone-sandbox /usr/local/bin/portone-sandbox
# distroless's nonroot user, by number so Kubernetes can verify runAsNonRoot.
USER 65532:65532
ENV GRPC_LISTEN_ADDR=0.0.0.0:50051 \
    METRICS_LISTEN_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
# gRPC, metrics, and the plain health port used when gRPC needs mTLS.
EXPOSE 50051 9090 50052
ENTRYPOINT ["/usr/local/bin/certification-service"]
CMD ["serve"]
