# The platform image (gateway and controller) where a registry answers (docs/install.md):
#   docker build -f deploy/platform.Dockerfile -t stoker/platform:0.1.0 .
# Offline (no registry), deploy/swarm/build-images.sh builds the same image from the debootstrap root filesystem.
# Function images are built separately, by `stoker build`. .dockerignore keeps the context to the packages.
ARG BASE=python:3.11.9-slim-bookworm
FROM ${BASE}
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp stoker
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stoker ./stoker
COPY gateway ./gateway
COPY runtime ./runtime
COPY builder ./builder
COPY autoscaler ./autoscaler
COPY events ./events
RUN pip install --no-cache-dir . && rm -rf /src \
 && mkdir -p /var/lib/stoker && chown 10001:10001 /var/lib/stoker && chmod 0700 /var/lib/stoker
WORKDIR /tmp
USER 10001
EXPOSE 8080
ENTRYPOINT []
CMD ["stoker", "up", "--host", "0.0.0.0"]
