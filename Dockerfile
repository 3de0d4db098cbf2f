# syntax=docker/dockerfile:1
# Switchyard container image: a multi-stage build, a stripped binary on distroless, non-root.
#
#   docker build --build-arg SWITCHYARD_GIT_COMMIT="$(git rev-parse HEAD)" -t switchyard .
#   docker run --rm -p 8080:8080 -p 9901:9901 -v "$PWD/switchyard.toml:/etc/switchyard/switchyard.toml" switchyard
#
# The build context has no .git (see .dockerignore): the commit that `switchyard --version`
# prints comes from the SWITCHYARD_GIT_COMMIT build argument. The symbols stay in the build
# stage (`/out/switchyard.debug`); `--target debug-symbols` exports them.

FROM rust:1.95-slim-bookworm AS build
# cmake and make build zlib-ng (pingora), clang's libraries let bindgen read libpg_query's
# headers (pg_query), protoc serves the etcd client's build; binutils' objcopy splits the
# symbols. Debian's security updates move these versions, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake make clang libclang-dev pkg-config protobuf-compiler binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG SWITCHYARD_GIT_COMMIT=unknown
ENV SWITCHYARD_GIT_COMMIT=${SWITCHYARD_GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/release.sh /out

FROM scratch AS debug-symbols
COPY --from=build /out/switchyard.debug /out/SHA256SUMS /

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="HTTP ingress and Postgres router with a live-reloading config" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/switchyard /usr/bin/switchyard
# 65532: distroless's nonroot user. The config directory is a mount (a ConfigMap in
# Kubernetes); the audit log goes to a writable path set in the config.
USER 65532:65532
EXPOSE 8080 9901 6432
ENTRYPOINT ["/usr/bin/switchyard"]
CMD ["run", "--config", "/etc/switchyard/switchyard.toml", "--log-format", "json"]
