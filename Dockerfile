# syntax=docker/dockerfile:1
# runctl operator image: a static musl binary on distroless/static, running as uid 65532
# (nonroot). The Helm chart's securityContext (runAsUser 65532, readOnlyRootFilesystem) and
# ports (8080 metrics/health, 8443 job callback) match this file; tests/deploy_image.rs checks.
#
#   docker build -t runctl:dev .

FROM rust:1.94-alpine AS builder
RUN apk add --no-cache musl-dev cmake make perl clang
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
# Cargo needs every workspace member's manifest; the binary itself builds from src/.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin runctl \
    && install -D -m 0755 target/release/runctl /out/runctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/runctl /usr/local/bin/runctl
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["/usr/local/bin/runctl"]
CMD ["run", "--config", "/etc/runctl/config.yaml"]
