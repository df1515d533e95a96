# password-rotator: a static binary in an otherwise empty image, running as UID 65532.
#
#   docker build -t password-rotator:0.1.0 .
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts. Without a
# Docker engine, `make image` (tests/image/build.sh) builds the same binary on the host and
# this file's final stage with buildah, into target/image/password-rotator.oci.tar;
# tests/image.rs runs that image's entrypoint as the Deployment does and proves a rotation.
#
# The final image is `scratch`: no shell, no package manager, no libc, no CA bundle, no
# /etc/passwd. The binary needs none of them: it is statically linked (glibc's static
# libraries, `+crt-static`; name resolution, built into glibc, reads the /etc/hosts and
# /etc/resolv.conf the kubelet mounts), the Kubernetes API's CA comes from the in-cluster
# service account, and Redis Software's CA from each PasswordRotation's caSecret (the
# operator never uses built-in trust roots).

FROM rust:1-bookworm AS builder
ENV CARGO_TERM_COLOR=never
WORKDIR /src
# The workspace manifest names tests/support as a member, so cargo needs it to load the
# workspace (it is not built: only the password-rotator binary is).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/support ./tests/support
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release --target x86_64-unknown-linux-gnu \
        -p password-rotator --bin password-rotator \
 && install -m 0755 --strip target/x86_64-unknown-linux-gnu/release/password-rotator /password-rotator

# The final stage is also what tests/image/build.sh builds (with the COPY below taking the
# binary from its build context): keep exactly one such COPY, and no RUN.
FROM scratch
LABEL org.opencontainers.image.title="password-rotator" \
      org.opencontainers.image.description="Kubernetes operator that rotates Redis Software passwords without downtime" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /password-rotator /password-rotator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/password-rotator"]
CMD ["run"]
