# syntax=docker/dockerfile:1
# Multi-stage build: cgo is on for mattn/go-sqlite3, the runtime image is
# slim and runs as a non-root user, bound to 0.0.0.0 inside the container.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X github.com/lumengw/lumen/cmd.Version=${VERSION}" -o /out/lumen .

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data lumen && mkdir -p /data && chown lumen /data
COPY --from=build /out/lumen /usr/local/bin/lumen
COPY config.example.yaml /etc/lumen/config.yaml
# Relative state paths resolve against the config file's directory, which is
# read-only here: keep the ledger, audit key and learned state in /data.
RUN sed -i 's#\./lumen#/data/lumen#g' /etc/lumen/config.yaml && grep -q '/data/lumen.db' /etc/lumen/config.yaml
VOLUME /data
USER lumen
WORKDIR /data
ENV LUMEN_HOST=0.0.0.0 LUMEN_PORT=4000 LUMEN_CONFIG=/etc/lumen/config.yaml
EXPOSE 4000
ENTRYPOINT ["lumen"]
CMD ["serve"]
