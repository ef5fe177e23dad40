# sluice: build with the same CMake and install script as a Debian 12 machine, run as non-root.
FROM debian:12-slim AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF \
 && cmake --build /build -j"$(nproc)"

FROM debian:12-slim
# libhyperscan5 where the build stage had Hyperscan (amd64; see scripts/install-deps.sh).
RUN apt-get update \
 && hs=$([ "$(dpkg --print-architecture)" = amd64 ] && echo libhyperscan5 || true) \
 && apt-get install -y --no-install-recommends libevent-core-2.1-7 libevent-extra-2.1-7 \
      libevent-pthreads-2.1-7 libevent-openssl-2.1-7 libssl3 ca-certificates libhiredis0.14 libyaml-0-2 libyajl2 libnghttp2-14 libprotobuf-c1 $hs \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin sluice
COPY --from=build /build/sluice /usr/local/bin/sluice
COPY conf/sluice.yaml /etc/sluice/sluice.yaml
USER sluice
# Inside a container loopback is the container's own: kubelet's probes and a Prometheus in
# another container reach the admin listener only on the pod's address. Give the container
# SLUICE_ADMIN_TOKEN (from a Secret) so that /top and /config there ask for it.
ENV SLUICE_ADMIN_LISTEN=0.0.0.0:9901
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["-c", "/etc/sluice/sluice.yaml"]
