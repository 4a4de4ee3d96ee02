# The image of `typha serve` and `felix-agent` (helm/typha runs both).
#
# Build it with tools/build-image: it makes the base from Debian's packages
# with mmdebstrap (no container registry needed), downloads the wheels that
# constraints.txt pins into build/image/wheels, and runs this file with
# --build-arg BASE=<that base>.  With a registry, any Debian bookworm image
# works as BASE (e.g. docker.io/library/debian:bookworm-slim): the packages
# it lacks are installed from tools/image/debian-packages, the same list.
ARG BASE=localhost/typha-base:bookworm
FROM ${BASE}

COPY tools/image/debian-packages /usr/share/typha-py/debian-packages
RUN set -eu; \
    want=$(grep -v '^#' /usr/share/typha-py/debian-packages); \
    missing=""; \
    for p in $want; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done; \
    if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*; \
    fi; \
    dpkg-query -W -f='${Package}=${Version}\n' | sort > /usr/share/typha-py/debian-installed

COPY constraints.txt /usr/share/typha-py/constraints.txt
COPY build/image/wheels /tmp/wheels
# Only the wheels from the build context: the build needs no network.
RUN python3 -m venv /opt/typha \
    && /opt/typha/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
       --find-links /tmp/wheels -c /usr/share/typha-py/constraints.txt typha-py \
    && rm -rf /tmp/wheels \
    && ln -s /opt/typha/bin/typha /opt/typha/bin/felix-agent /usr/local/bin/ \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin typha

# typha runs as this user; the chart runs felix-agent as root with only
# CAP_NET_ADMIN (docs/operations.md says why).
USER 10001:10001
EXPOSE 5473 9098 9099
ENTRYPOINT ["typha"]
CMD ["serve"]
