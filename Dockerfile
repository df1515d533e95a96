# password-rotator: a static (musl) binary in an otherwise empty image, running as UID 65532.
#
#   docker build -t password-rotator:0.1.0 .
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts.
# The final image is `scratch`: no shell, no package manager, no libc, no CA bundle. The
# binary needs none of them: it is statically linked, the Kubernetes API's CA comes from the
# in-cluster service account, and Redis Software's CA from each PasswordRotation's caSecret
# (the operator never uses built-in trust roots). A distroless static "nonroot" image works
# as a drop-in base too, if you want /etc/passwd and a CA bundle present.

FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
# ring (rustls' crypto) compiles C code: build it with musl's gcc wrapper.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /src
# The workspace manifest names tests/support as a member, so cargo needs it to load the
# workspace (it is not built: only the password-rotator binary is).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/support ./tests/support
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target x86_64-unknown-linux-musl \
        -p password-rotator --bin password-rotator \
 && cp target/x86_64-unknown-linux-musl/release/password-rotator /password-rotator

FROM scratch
COPY --from=builder /password-rotator /usr/local/bin/password-rotator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/password-rotator"]
CMD ["run"]
