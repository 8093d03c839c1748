# The platform image (gateway and controller) used by deploy/compose and deploy/kubernetes.
#   docker build -f deploy/platform.Dockerfile -t stoker/platform:0.1.0 .
# Function images are built separately, by `stoker build`.
ARG BASE=python:3.11-slim
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
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /tmp
USER 10001
EXPOSE 8080
ENTRYPOINT []
CMD ["stoker", "up", "--host", "0.0.0.0"]
