# clerk-index container image: a release build in a Rust image, then only the binary on a
# distroless base (glibc and CA certificates; no shell, no package manager), run as non-root.
#
#   docker build -t clerk-index:dev .
#   docker run --rm -p 50051:50051 -p 8080:8080 clerk-index:dev demo --grpc-addr 0.0.0.0:50051 --http-addr 0.0.0.0:8080
#
# The protobuf compiler is vendored by the build (build.rs), so the builder needs nothing else.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin clerk-index \
    && cp target/release/clerk-index /clerk-index \
    && strip /clerk-index \
    && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /clerk-index /usr/local/bin/clerk-index
COPY --from=build --chown=65532:65532 /data /var/lib/clerk-index
# The index lives here; mount a volume (the Helm chart mounts a PersistentVolumeClaim).
ENV CLERK_INDEX_DATA_DIR=/var/lib/clerk-index \
    CLERK_INDEX_LOG_FORMAT=json
WORKDIR /var/lib/clerk-index
USER 65532:65532
EXPOSE 50051 8080
ENTRYPOINT ["/usr/local/bin/clerk-index"]
CMD ["serve"]
